"""The default build's vocabulary and glossary cache: a hit gives exactly the bytes a fresh computation gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("natasha")
from zsclip_export import build_cache  # noqa: E402
from zsclip_export.build_cache import cached_glossary, cached_vocabulary  # noqa: E402
from zsclip_train.vocab import VocabConfig, build_tokenizer, find_navec_file  # noqa: E402

SMALL = VocabConfig(size=2000, piece_size=500, inflections=False)


def test_vocabulary_cache_hit_is_byte_identical_to_a_fresh_build(tmp_path: Path, monkeypatch) -> None:
    navec = find_navec_file()
    fresh, fresh_codebook = cached_vocabulary(navec, SMALL, None)
    miss, _ = cached_vocabulary(navec, SMALL, tmp_path)
    stored = sorted(p.name for p in tmp_path.iterdir())
    assert len(stored) == 1 and stored[0].startswith("vocabulary-")

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a cache hit must not rebuild the vocabulary")

    monkeypatch.setattr("zsclip_train.vocab.build_vocabulary", no_rebuild)
    hit, hit_codebook = cached_vocabulary(navec, SMALL, tmp_path)
    for built in (miss, hit):
        assert built.tokens == fresh.tokens
        for name in build_cache.VOCAB_ARRAYS:
            a, b = getattr(built, name), getattr(fresh, name)
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    assert hit_codebook.tobytes() == fresh_codebook.tobytes()
    assert build_tokenizer(hit).to_str() == build_tokenizer(fresh).to_str()


def test_a_changed_input_is_a_miss(tmp_path: Path) -> None:
    navec = find_navec_file()
    cached_vocabulary(navec, SMALL, tmp_path)
    cached_vocabulary(navec, VocabConfig(size=2001, piece_size=500, inflections=False), tmp_path)
    assert len(list(tmp_path.glob("vocabulary-*"))) == 2


def test_glossary_cache_hit_is_byte_identical(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wiki_ru_wordnet")
    from zsclip_train.glossary import GlossaryConfig

    exclude = ["кошка", "собака", "жираф"]
    fresh = cached_glossary(exclude, GlossaryConfig(senses=1), None)
    assert cached_glossary(exclude, GlossaryConfig(senses=1), tmp_path) == fresh
    monkeypatch.setattr("zsclip_train.glossary.build_glossary", lambda *a, **k: pytest.fail("rebuilt on a hit"))
    assert cached_glossary(list(reversed(exclude)), GlossaryConfig(senses=1), tmp_path) == fresh
    assert "жираф" not in json.loads(fresh) and len(json.loads(fresh)) > 1000


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ZSCLIP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert build_cache.cache_dir() == tmp_path / "zsclip" / "build"
    monkeypatch.setenv("ZSCLIP_CACHE_DIR", "off")
    assert build_cache.cache_dir() is None


def test_source_key_ignores_docstrings_and_comments_but_not_code(tmp_path: Path) -> None:
    import types

    def module(text: str) -> types.SimpleNamespace:
        path = tmp_path / f"m{abs(hash(text))}.py"
        path.write_text(text, encoding="utf-8")
        return types.SimpleNamespace(__file__=str(path))

    base = build_cache.source_sha(module('"""Doc."""\ndef f(x):\n    """Doc."""\n    return x + 1\n'))
    assert base == build_cache.source_sha(module('"""Other doc."""\n# note\ndef f(x):\n    return x + 1  # why\n'))
    assert base != build_cache.source_sha(module('"""Doc."""\ndef f(x):\n    return x + 2\n'))
