"""Where the default model directory lives."""

from __future__ import annotations

import os
from pathlib import Path

MODEL_ENV = "ZSCLIP_MODEL_DIR"
DEFAULT_MODEL_NAME = "ru-effnet-lite2-navec"


def default_model_dir() -> Path:
    """`$ZSCLIP_MODEL_DIR`, else `$XDG_DATA_HOME/zsclip/models/ru-effnet-lite2-navec`
    (`~/.local/share/...` when XDG_DATA_HOME is unset)."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "zsclip" / "models" / DEFAULT_MODEL_NAME
