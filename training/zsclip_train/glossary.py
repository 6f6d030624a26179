"""The default model's glossary: Wiktionary definitions of Russian words, from the `wiki-ru-wordnet` wheel.

The text head is taught the names in the label table. For any other word the runtime may meet as a whole
class name («жираф», «абрикос», «планета»), the glossary keeps the first literal senses of its Wiktionary
entry («крупное жвачное млекопитающее …»), cleaned of wiki markup, examples and Latin names. Senses marked
figurative, colloquial, slang, legal, economic, mathematical, … are skipped: photos show the literal thing.
Names the label table already teaches are left out (the head knows them better than a definition does).
Measured on the proxies (held-out label-table rows, Tux Paint stamps): export/README-default-model.md, "Glossary".
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from zsclip.errors import ConfigError
from zsclip.glossary import gloss_key

# Wiktionary sense labels ({{п.}}, {{разг.|ru}}, ...) whose senses a photo would not show.
SKIPPED_LABELS = frozenset({
    "п.", "перен.", "жарг.", "разг.", "прост.", "устар.", "юр.", "экон.", "книжн.", "неодобр.", "ирон.",
    "шутл.", "презр.", "бранн.", "груб.", "фам.", "сленг", "пренебр.", "истор.", "ист.", "спорт.", "полит.",
    "филос.", "мат.", "матем.", "лингв.", "комп.", "информ.", "психол.",
})
_LINK = re.compile(r"\[\[([^\]|]*)\|[^\]]*\]\]")
_PARENS = re.compile(r"\([^)]*\)")


@dataclass(frozen=True)
class GlossaryConfig:
    """How many senses per word, and how many words of each definition, the glossary keeps."""

    senses: int = 2
    max_words: int = 15

    def __post_init__(self) -> None:
        if self.senses < 1 or self.max_words < 1:
            raise ConfigError("glossary senses and max_words must be >= 1")


def wiki_wordnet_db() -> Path:
    """The SQLite database inside the installed `wiki-ru-wordnet` package.

    Raises:
        ConfigError: the package (or its database) is missing, with the pip line.
    """
    spec = importlib.util.find_spec("wiki_ru_wordnet")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("Wiktionary glossary missing: pip install wiki-ru-wordnet")
    path = Path(list(spec.submodule_search_locations)[0]) / "database" / "wikiwordnet.db"
    if not path.is_file():
        raise ConfigError(f"{path} missing: reinstall wiki-ru-wordnet")
    return path


def split_templates(text: str) -> Tuple[str, List[str]]:
    """Text with `{{...}}` templates (nested) removed, and the templates' first fields (sense labels)."""
    kept: List[str] = []
    labels: List[str] = []
    depth = start = i = 0
    while i < len(text):
        if text.startswith("{{", i):
            if depth == 0:
                start = i
            depth += 1
            i += 2
        elif text.startswith("}}", i) and depth:
            depth -= 1
            i += 2
            if depth == 0:
                labels.append(text[start + 2 : i - 2].split("|")[0].strip())
        else:
            if depth == 0:
                kept.append(text[i])
            i += 1
    return "".join(kept), labels


def clean_definition(raw: str, max_words: int) -> Tuple[str, List[str]]:
    """One database definition (`lemma~ru~lemma~ru~text~ids`) -> (plain text, sense labels).

    >>> clean_definition("такса~ru~такса~ru~[[порода]] небольших [[собака|собак]] {{пример|…}}~1", 15)
    ('порода небольших собака', ['пример'])
    """
    fields = raw.split("~")
    text = fields[4] if len(fields) > 4 else raw
    text, labels = split_templates(text)
    text = _LINK.sub(r"\1", text).replace("[[", "").replace("]]", "")
    text = _PARENS.sub(" ", text)
    words = text.split()[:max_words]
    return " ".join(words).strip(" ;,.:"), labels


def select_senses(rows: Iterable[Tuple[str, str]], exclude: Iterable[str], cfg: GlossaryConfig) -> Dict[str, List[str]]:
    """(lemma, raw definition) rows in dictionary order -> {gloss_key(lemma): first literal senses}."""
    skip = {gloss_key(name) for name in exclude}
    glossary: Dict[str, List[str]] = {}
    for lemma, raw in rows:
        key = gloss_key(lemma)
        if not key or key in skip:
            continue
        text, labels = clean_definition(raw, cfg.max_words)
        if not text or any(label in SKIPPED_LABELS for label in labels):
            continue
        senses = glossary.setdefault(key, [])
        if len(senses) < cfg.senses and text not in senses:
            senses.append(text)
    return glossary


def build_glossary(
    exclude: Iterable[str], cfg: GlossaryConfig = GlossaryConfig(), db: Optional[Path] = None
) -> Dict[str, List[str]]:
    """The glossary of every Wiktionary word but the `exclude`d names (the label table's phrases).

    Raises:
        ConfigError: wiki-ru-wordnet is not installed.
    """
    path = db or wiki_wordnet_db()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT lemma, definition FROM synsets ORDER BY synset_id").fetchall()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: unreadable Wiktionary database ({exc}); reinstall wiki-ru-wordnet") from None
    finally:
        conn.close()
    return select_senses(rows, exclude, cfg)
