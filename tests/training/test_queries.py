"""Query cleaning (table-driven, Russian examples) and `prepare` on a generated catalogue."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner
from zsclip_train.cli import main
from zsclip_train.data_demo import make_demo_catalogue
from zsclip_train.queries import QueryCleanConfig, classify_query, clean_queries

CASES = [
    # raw query, cleaned (None = dropped), reason
    ("Красный  Круг", "красный круг", "ok"),
    ("ЁЛКА новогодняя", "елка новогодняя", "ok"),
    ("  чёрно-белый   кот  ", "черно-белый кот", "ok"),
    ("ｋｏｔ　ｆｕｌｌwidth", "kot fullwidth", "ok"),  # NFKC: full-width letters and space
    ("«Мишка на севере»!!!", "мишка на севере", "ok"),
    ("кот https://cats.ru/a?b=1 смешной", "кот смешной", "ok"),
    ("собака www.dogs.com", "собака", "ok"),
    ("пишите на mail@example.ru котята", "пишите на котята", "ok"),
    ("щенки +7 (999) 123-45-67", "щенки", "ok"),
    ("щенки 8-800-555-35-35 недорого", "щенки недорого", "ok"),
    ("iphone 15 pro", "iphone 15 pro", "ok"),  # numbers inside a query stay
    ("ваз 2107", "ваз 2107", "ok"),
    ("12345", None, "number"),
    ("2023 - 2024", None, "number"),
    ("картинки", None, "stop_words"),
    ("Фото", None, "stop_words"),
    ("скачать бесплатно", None, "stop_words"),
    ("картинки 2023", None, "stop_words"),
    ("фото кота", "фото кота", "ok"),  # a stop word next to content stays
    ("https://yandex.ru/images", None, "empty"),
    ("???", None, "empty"),
    ("", None, "empty"),
    ("я", None, "too_short"),
]


@pytest.mark.parametrize("raw,cleaned,reason", CASES)
def test_classify_query(raw, cleaned, reason):
    assert classify_query(raw) == (cleaned, reason)


def test_dedupe_cap_and_custom_stop_words(tmp_path):
    reasons: Counter = Counter()
    cfg = QueryCleanConfig(max_queries=2)
    assert clean_queries(["Кот", "кот!", "КОТ", "картинки", "рыжий кот", "кошка"], cfg, reasons) == ["кот", "рыжий кот"]
    assert reasons["duplicate"] == 2 and reasons["stop_words"] == 1
    words = tmp_path / "stop.txt"
    words.write_text("# my list\nКОТ\nобои  # comment\n", encoding="utf-8")
    custom = QueryCleanConfig.from_file(words)
    assert custom.stop_words == {"кот", "обои"}
    assert clean_queries(["кот", "картинки", "обои"], custom) == ["картинки"]


def test_prepare_joins_queries_with_downloaded_images(tmp_path):
    cat = make_demo_catalogue(tmp_path / "cat", n_images=30, size=64, n_eval=1)
    with open(cat / "images.json", "a") as handle:  # an image that cannot be downloaded
        handle.write(json.dumps({"image": "lost", "url": (tmp_path / "nope.jpg").as_uri()}) + "\n")
    with open(cat / "metadata.json", "a") as handle:
        handle.write(json.dumps({"image": "lost", "queries": ["потерянный кот"]}, ensure_ascii=False) + "\n")
        handle.write(json.dumps({"image": "img0", "queries": ["ещё один запрос", "картинки"]}, ensure_ascii=False) + "\n")
    runner = CliRunner()
    result = runner.invoke(main, ["download", "--images", str(cat / "images.json"), "--out", str(tmp_path / "shards"),
                                  "--concurrency", "4", "--retries", "0", "--min-side", "32", "--shard-size", "8"])
    assert result.exit_code == 0, result.output
    assert "ok: 30" in result.output and "network error: 1" in result.output
    result = runner.invoke(main, ["prepare", "--metadata", str(cat / "metadata.json"), "--shards",
                                  str(tmp_path / "shards"), "--out", str(tmp_path / "prep"), "--vocab-size", "200"])
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "prep" / "stats.json").read_text(encoding="utf-8"))
    assert stats["images"] == 30 and stats["images_missing"] == 1 and stats["pairs_image_missing"] == 1
    assert stats["query_outcomes"]["stop_words"] >= 30
    index = np.load(tmp_path / "prep" / "index.npz")
    assert len(index["shard"]) == 30
    lines = (tmp_path / "prep" / "queries.txt").read_text(encoding="utf-8").splitlines()
    assert all(line and "картинки" not in line.split("\t") for line in lines)
    assert any("еще один запрос" in line.split("\t") for line in lines)  # merged second line of img0
    assert (tmp_path / "prep" / "tokenizer.json").is_file()
