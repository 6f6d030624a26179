"""Plural forms of Russian label phrases, a training-time augmentation of the text head.

Class names are often written in the plural ("самолеты", "белые акулы"); navec gives plural word forms
their own vectors, so a head trained on singular names alone maps plurals worse (measured on held-out
label-table synonyms put in the plural: top-1 0.38 without this augmentation, 0.51 with it; singular
names unchanged). Training adds each phrase's nominative plural with the same target; inference stays
morphology-free.

The phrase's head noun is its first word that is a singular nominative noun (after the leading
adjectives); the adjectives before it agree with it, the words after it (genitive or prepositional
dependents: "бочка для дождевой воды") stay as they are. Needs `pymorphy3` (+ `pymorphy3-dicts-ru`).
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any, Optional

from zsclip.errors import ConfigError

PLURAL = frozenset({"plur", "nomn"})


@lru_cache(maxsize=1)
def analyzer() -> Any:
    """The shared pymorphy3 analyzer.

    Raises:
        ConfigError: pymorphy3 (or its Russian dictionaries) is not installed.
    """
    try:
        import pymorphy3
    except ImportError:
        raise ConfigError("plural augmentation needs pymorphy3: pip install 'zsclip[export]'") from None
    return pymorphy3.MorphAnalyzer(lang="ru")


def _singular_nominative(word: str, parts_of_speech: frozenset, extra: frozenset = frozenset()) -> Any:
    for parse in analyzer().parse(word):
        tag = parse.tag
        if tag.POS in parts_of_speech and tag.case == "nomn" and tag.number == "sing" \
                and parse.inflect(PLURAL | extra) is not None:
            return parse
    return None


def _is_adjective(word: str) -> bool:
    best = analyzer().parse(word)[0]
    return best.tag.POS in ("ADJF", "PRTF")


@cache
def plural_phrase(phrase: str) -> Optional[str]:
    """The nominative plural of a Russian noun phrase, or None (no singular head noun, or no plural form)."""
    words = phrase.split()
    head, noun = None, None
    for i, word in enumerate(words):
        if i < len(words) - 1 and _is_adjective(word):
            continue
        noun = _singular_nominative(word, frozenset({"NOUN"}))
        head = i if noun is not None else None
        break
    if head is None or noun is None:
        return None
    out = list(words)
    out[head] = noun.inflect(PLURAL).word
    animacy = frozenset({"anim"}) if "anim" in noun.tag else frozenset()
    for i in range(head):
        adjective = _singular_nominative(words[i], frozenset({"ADJF", "PRTF"}))
        if adjective is None:
            continue
        form = adjective.inflect(PLURAL | animacy) or adjective.inflect(PLURAL)
        out[i] = form.word
    result = " ".join(out).replace("ё", "е")
    return None if result == phrase else result
