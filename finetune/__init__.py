"""Offline LoRA fine-tuning to a merged, verified GGUF the bot can serve: prepare -> train -> merge -> export
-> verify. `python -m finetune --help`; from code, `finetune.pipeline.run_pipeline(...)`.

Nothing heavy is imported here: torch, transformers and llama.cpp load inside the stages that need them.
"""
