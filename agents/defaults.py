"""Model defaults, defined once: the settings, the backends and the CLIs read them from here (no heavy imports)."""

from __future__ import annotations

DEFAULT_LEVEL = "prompt"  # the mode a new chat starts in, unless DEFAULT_MODE says otherwise
DEFAULT_MODEL = "cloud"
CLOUD_MODEL = "gpt-4o-mini"  # OPENAI_MODEL
# the `local` model: the bundled Gemma 3 270M unless LOCAL_MODEL_PATH or LOCAL_MODEL_REPO/FILE say otherwise
