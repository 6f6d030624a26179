"""Building the default model's glossary from a Wiktionary database (a tiny one made here)."""

import sqlite3
from pathlib import Path

import pytest
from zsclip.errors import ConfigError
from zsclip_train import glossary as gl
from zsclip_train.glossary import GlossaryConfig, build_glossary, clean_definition, select_senses, split_templates


def raw(lemma: str, text: str) -> str:
    return f"{lemma}~ru~{lemma}~ru~{text}~12~34"


def test_templates_are_removed_with_nesting_and_their_labels_kept():
    text, labels = split_templates("{{зоол.|ru}} зверь {{пример|Он {{выдел|видел}} зверя}} с хвостом")
    assert text.split() == ["зверь", "с", "хвостом"]
    assert labels == ["зоол.", "пример"]


def test_definition_is_cleaned_of_links_latin_names_and_cut():
    text, labels = clean_definition(raw("жираф", "{{зоол.|ru}} [[жвачный|жвачное]] [[млекопитающее]] (Giraffa) с длинной шеей"), 4)
    assert text == "жвачный млекопитающее с длинной"
    assert labels == ["зоол."]


def test_select_senses_skips_figurative_and_taught_names_and_keeps_order():
    rows = [
        ("такса", raw("такса", "установленная [[расценка]] оплаты {{пример|}}")),
        ("такса", raw("такса", "{{п.|ru}} о человеке")),
        ("такса", raw("такса", "[[порода]] небольших собак")),
        ("такса", raw("такса", "третий смысл")),
        ("Ёж", raw("Ёж", "колючее животное")),
        ("собака", raw("собака", "домашнее животное")),
        ("пусто", raw("пусто", "{{пример|только пример}}")),
    ]
    got = select_senses(rows, exclude=["Собака"], cfg=GlossaryConfig(senses=2))
    assert got == {"такса": ["установленная расценка оплаты", "порода небольших собак"], "еж": ["колючее животное"]}


def test_build_glossary_reads_the_database(tmp_path):
    db = tmp_path / "wn.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE synsets(synset_id INTEGER, lemma TEXT, definition TEXT)")
    conn.executemany("INSERT INTO synsets VALUES (?, ?, ?)",
                     [(2, "кенгуру", raw("кенгуру", "второй смысл")), (1, "кенгуру", raw("кенгуру", "сумчатое животное"))])
    conn.commit()
    conn.close()
    assert build_glossary([], GlossaryConfig(senses=1), db=db) == {"кенгуру": ["сумчатое животное"]}


def test_broken_database_and_missing_package_are_clear_errors(tmp_path, monkeypatch):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="unreadable Wiktionary database"):
        build_glossary([], db=bad)
    monkeypatch.setattr(gl.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install wiki-ru-wordnet"):
        gl.wiki_wordnet_db()


def test_installed_package_has_the_database():
    pytest.importorskip("wiki_ru_wordnet")
    assert gl.wiki_wordnet_db().stat().st_size > 1_000_000
    assert Path(gl.wiki_wordnet_db()).name == "wikiwordnet.db"
