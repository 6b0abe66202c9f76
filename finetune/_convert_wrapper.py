"""Run llama.cpp's own convert_hf_to_gguf.py from a cached source tree, with the pre-tokenizer name settable.

Usage: python _convert_wrapper.py --tree DIR [--pre-tokenizer NAME | --pre-tokenizer-fallback NAME]
                                  [--vocab-from GGUF] -- ARGS...
ARGS go to the converter unchanged. Run in a subprocess: it imports the tree's `gguf-py` (not the registry's
`gguf` package, which does not match this converter) and patches the converter's vocabulary step.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tree", type=Path, required=True, help="the vendor/llama.cpp directory")
    parser.add_argument("--pre-tokenizer", help="always write this tokenizer.ggml.pre name")
    parser.add_argument("--pre-tokenizer-fallback", help="use this name when the converter's hash check fails")
    parser.add_argument("--vocab-from", type=Path, help="copy the llama.cpp vocabulary of this GGUF file")
    args, rest = parser.parse_known_args()
    if rest[:1] == ["--"]:
        rest = rest[1:]
    tree = args.tree.resolve()
    sys.path[:0] = [str(tree / "gguf-py"), str(tree)]

    import gguf

    if not Path(gguf.__file__).resolve().is_relative_to(tree):
        sys.exit(f"gguf was imported from {gguf.__file__}, not from {tree}/gguf-py; the converter needs its own")

    from conversion.base import TextModel

    original = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self: TextModel, tokenizer: object) -> str:
        # The converter recognises a BPE pre-tokenizer by hashing how it splits a probe text; a tokenizer
        # trained locally has a hash nobody registered, although its split rules may be a well-known set.
        if args.pre_tokenizer:
            return args.pre_tokenizer
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if not args.pre_tokenizer_fallback:
                raise
            print(f"pre-tokenizer hash not recognised: using {args.pre_tokenizer_fallback!r}", file=sys.stderr)
            return args.pre_tokenizer_fallback

    TextModel.get_vocab_base_pre = get_vocab_base_pre  # type: ignore[method-assign]

    if args.vocab_from:
        original_prepare = TextModel.prepare_metadata

        def prepare_metadata(self: TextModel, vocab_only: bool) -> None:
            # An instance attribute wins over every architecture's own set_vocab.
            self.set_vocab = lambda: copy_vocab(self, args.vocab_from, args.pre_tokenizer)  # type: ignore[method-assign]
            original_prepare(self, vocab_only)

        TextModel.prepare_metadata = prepare_metadata  # type: ignore[method-assign]

    script = tree / "convert_hf_to_gguf.py"
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")


def copy_vocab(model: object, source: Path, pre_tokenizer: str | None) -> None:
    """Write the `tokenizer.*` metadata of `source` (a GGUF) unchanged, but the chat template from the model dir.

    A model de-quantized from a GGUF keeps the vocabulary llama.cpp already tokenizes it with; converting the
    transformers tokenizer rebuilt from it would not round-trip (a sentencepiece model has no tokenizer.model).
    """
    import gguf

    writer = model.gguf_writer  # type: ignore[attr-defined]
    reader = gguf.GGUFReader(source)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer.") or key == gguf.Keys.Tokenizer.CHAT_TEMPLATE:
            continue
        if key == gguf.Keys.Tokenizer.PRE and pre_tokenizer:
            continue
        vtype = field.types[0]
        writer.add_key_value(key, field.contents(), vtype,
                             sub_type=field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None)
    if pre_tokenizer:
        writer.add_tokenizer_pre(pre_tokenizer)
    template = gguf.SpecialVocab(model.dir_model, load_merges=False).chat_template  # type: ignore[attr-defined]
    if template:
        writer.add_chat_template(template)


if __name__ == "__main__":
    main()
