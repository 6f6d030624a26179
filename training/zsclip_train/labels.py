"""The Russian label table of the 1000 ImageNet-1k classes, and the text-side training pairs made from it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Callable, Dict, List, Optional, Sequence, Set, Tuple

from zsclip.errors import ConfigError

TABLE_NAME = "imagenet_labels_ru.tsv"


@dataclass(frozen=True)
class LabelRow:
    """One ImageNet class: canonical index, WordNet id, Russian names (most common first), hypernym chain and
    a Russian rendering of its WordNet definition (may be empty)."""

    index: int
    wnid: str
    names: Tuple[str, ...]
    hypernyms: Tuple[str, ...]
    definition: str = ""


@dataclass(frozen=True)
class Phrase:
    """A Russian phrase and the ImageNet classes it names (one for a name, many for a hypernym)."""

    text: str
    classes: Tuple[int, ...]
    is_name: bool  # True when it is some class's own name, False for a pure hypernym or a definition
    is_definition: bool = False  # a class's definition: a bag of associated words, never inflected


def default_table_path() -> Path:
    return Path(__file__).parent / "data" / TABLE_NAME


def load_label_table(path: Optional[Path] = None) -> List[LabelRow]:
    """Read `index, wnid, names_ru, hypernyms_ru[, definition_ru]` (TSV, `;`-separated lists).

    Raises:
        ConfigError: missing columns, bad indices, or rows out of order.
    """
    path = Path(path) if path else default_table_path()
    rows: List[LabelRow] = []
    with open(path, encoding="utf-8", newline="") as handle:
        for line_no, record in enumerate(csv.DictReader(handle, delimiter="\t"), start=2):
            try:
                row = LabelRow(
                    index=int(record["index"]),
                    wnid=record["wnid"].strip(),
                    names=split_list(record["names_ru"]),
                    hypernyms=split_list(record.get("hypernyms_ru") or ""),
                    definition=(record.get("definition_ru") or "").strip().lower().replace("ё", "е"),
                )
            except (KeyError, ValueError, AttributeError) as exc:
                raise ConfigError(f"{path}:{line_no}: bad row ({exc})") from None
            if row.index != len(rows) or not row.names:
                raise ConfigError(f"{path}:{line_no}: index {row.index} out of order or no names")
            rows.append(row)
    return rows


def split_list(cell: str) -> Tuple[str, ...]:
    return tuple(part.strip().lower().replace("ё", "е") for part in cell.split(";") if part.strip())


def build_phrases(
    rows: Sequence[LabelRow], holdout: AbstractSet[Tuple[int, str]] = frozenset(), definitions: bool = False
) -> List[Phrase]:
    """Every distinct name and hypernym with the classes it covers (and, with `definitions`, each class's
    definition, covering that class only).

    A name covers its class; a hypernym covers every class whose chain holds it (it is pulled
    onto the mean of its descendants). Pairs in `holdout` (class, name) are left out, for validation.
    """
    covers: Dict[str, Set[int]] = {}
    names: Set[str] = set()
    for row in rows:
        for name in row.names:
            if (row.index, name) in holdout:
                continue
            covers.setdefault(name, set()).add(row.index)
            names.add(name)
        for hypernym in row.hypernyms:
            covers.setdefault(hypernym, set()).add(row.index)
    phrases = [Phrase(text, tuple(sorted(classes)), text in names) for text, classes in sorted(covers.items())]
    if definitions:
        phrases += [Phrase(row.definition, (row.index,), False, True) for row in rows
                    if row.definition and row.definition not in covers]
    return phrases


def augment_phrases(phrases: Sequence[Phrase], inflect: Optional[Callable[[str], Optional[str]]]) -> List[Phrase]:
    """`phrases` plus each one's inflected form (`inflect` -> None: none) with the same classes.

    A form that is already a phrase of its own is left out (that phrase keeps its own target); forms
    shared by several phrases cover the union of their classes."""
    if inflect is None:
        return list(phrases)
    existing = {p.text for p in phrases}
    extra: Dict[str, Tuple[Set[int], bool]] = {}
    for phrase in phrases:
        if phrase.is_definition:
            continue
        form = inflect(phrase.text)
        if not form or form in existing:
            continue
        classes, is_name = extra.setdefault(form, (set(), False))
        classes.update(phrase.classes)
        extra[form] = (classes, is_name or phrase.is_name)
    return list(phrases) + [Phrase(text, tuple(sorted(c)), n) for text, (c, n) in sorted(extra.items())]


def synonym_holdout(rows: Sequence[LabelRow]) -> Set[Tuple[int, str]]:
    """The last listed name of each class with >= 3 names: a text-only validation set for the head."""
    return {(row.index, row.names[-1]) for row in rows if len(row.names) >= 3}
