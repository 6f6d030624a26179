"""Class names -> token arrays: label cleanup, prompt expansion, tokenisation."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from tokenizers import Tokenizer

from zsclip.errors import ModelDirError
from zsclip.manifest import TextConfig

_SPACES = re.compile(r"\s+")


def clean_label(name: str) -> str:
    """Shared Russian label cleanup: NFC, collapsed whitespace, trimmed.

    `ё` is kept here: the tokenizer's normaliser decides how to treat it, so the runtime and
    export see the same text.
    """
    return _SPACES.sub(" ", unicodedata.normalize("NFC", name)).strip()


def clean_label_as(name: str, cleaning: str) -> str:
    """A class name cleaned per `TextConfig.label_cleaning`: `nfc_collapse` (`clean_label`), `lower_strip`
    (ruCLIP's Predictor: `name.lower().strip()`, nothing else) or `none` (unchanged)."""
    if cleaning == "lower_strip":
        return name.lower().strip()
    if cleaning == "none":
        return name
    return clean_label(name)


def expand_prompts(name: str, prompts: Sequence[str], cleaning: str = "nfc_collapse") -> List[str]:
    """One text per prompt template, e.g. 'фото {}' -> 'фото собака'; the name cleaned per `cleaning`."""
    label = clean_label_as(name, cleaning)
    return [template.replace("{}", label) for template in prompts]


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a `tokenizers` JSON file.

    Raises:
        ModelDirError: unreadable or invalid tokenizer file.
    """
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise ModelDirError(f"{path}: not a valid tokenizers file ({exc})") from None


def tokenize(tokenizer: Tokenizer, texts: Sequence[str], cfg: TextConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Tokenise `texts` into (input_ids, attention_mask), int64 [N, L].

    L is the longest text's length, capped at `cfg.context_length` (pad to the real length,
    not the maximum: the text tower is cheaper that way).
    """
    encodings = tokenizer.encode_batch(list(texts))
    rows = [enc.ids[: cfg.context_length] for enc in encodings]
    width = max(1, max((len(r) for r in rows), default=1))
    ids = np.full((len(rows), width), cfg.pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def unknown_only(tokenizer: Tokenizer, text: str, cfg: TextConfig) -> bool:
    """True when every token of `text` is the unknown token (or there is none)."""
    ids = tokenizer.encode(text).ids
    if cfg.unk_id is None:
        return not ids
    return all(i == cfg.unk_id for i in ids)
