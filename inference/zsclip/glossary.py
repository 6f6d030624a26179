"""A model's glossary: short dictionary definitions of words its text head was never taught.

A class name the head did not see in training («жираф»: no ImageNet class) lands on a fuzzy mix of
concepts. When the model directory ships a glossary and the whole (normalised) name is one of its
entries, the name's embedding becomes a mix of the name's own embedding and the mean embedding of its
definitions («крупное жвачное млекопитающее с очень длинной шеей …»), weighted by
`text.gloss_weight`. The file is JSON, `{key: [definition, ...]}`, keys made by `gloss_key`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Tuple

from zsclip.errors import ModelDirError
from zsclip.jsonfile import read_json_object

_NOT_WORD = re.compile(r"[^\w\s-]")

Glossary = Dict[str, Tuple[str, ...]]


def gloss_key(name: str) -> str:
    """The lookup form of a name: lower case, ё → е, punctuation (not hyphens) dropped, single spaces.

    >>> gloss_key("  Морской  Конёк! ")
    'морской конек'
    """
    return " ".join(_NOT_WORD.sub(" ", name.lower().replace("ё", "е")).split())


def load_glossary(path: Path) -> Glossary:
    """Read a glossary file.

    Raises:
        ModelDirError: unreadable file, bad JSON, or not `{str: [str, ...]}`.
    """
    data = read_json_object(path, ModelDirError, "glossary")
    glossary: Glossary = {}
    for key, definitions in data.items():
        if not isinstance(definitions, list) or not all(isinstance(d, str) and d for d in definitions):
            raise ModelDirError(f"{path}: entry {key!r} must be a list of non-empty strings")
        if definitions:
            glossary[key] = tuple(definitions)
    return glossary
