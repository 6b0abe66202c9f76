"""Run llama.cpp's own convert_hf_to_gguf.py from a cached source tree, with the pre-tokenizer name settable.

Usage: python _convert_wrapper.py --tree DIR [--pre-tokenizer NAME | --pre-tokenizer-fallback NAME] -- ARGS...
ARGS go to the converter unchanged. Run in a subprocess: it imports the tree's `gguf-py` (not the registry's
`gguf` package, which does not match this converter) and patches one method of the converter.
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
    script = tree / "convert_hf_to_gguf.py"
    sys.argv = [str(script), *rest]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
