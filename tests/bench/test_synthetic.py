"""The synthetic set: same spec and seed -> same bytes; the promised mix of kinds; every file decodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zsclip.errors import ConfigError
from zsclip.preprocess import load_image
from zsclip_bench.synthetic import SyntheticSpec, describe_set, plan_kinds, write_synthetic_set

SMALL = SyntheticSpec(n=14, seed=3, large_fraction=0.15, png_fraction=0.25, large_size=(400, 300))


def file_bytes(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = file_bytes(write_synthetic_set(tmp_path / "a", SMALL))
    second = file_bytes(write_synthetic_set(tmp_path / "b", SMALL))
    assert first == second
    assert len([k for k in first if "/img/" in k]) == SMALL.n


def test_other_seed_other_bytes(tmp_path: Path) -> None:
    first = file_bytes(write_synthetic_set(tmp_path / "a", SMALL))
    other = file_bytes(write_synthetic_set(tmp_path / "b", SyntheticSpec(**{**SMALL.__dict__, "seed": 4})))
    images = [k for k in first if "/img/" in k]
    assert any(first[k] != other.get(k) for k in images)


def test_prefix_stable_when_n_grows() -> None:
    # image k has its own generator; only the kind plan (a permutation) depends on n
    assert plan_kinds(SMALL) == plan_kinds(SMALL)


def test_mix_and_decodability(tmp_path: Path) -> None:
    from PIL import Image

    root = write_synthetic_set(tmp_path / "s", SMALL)
    counts = describe_set(SMALL)
    assert counts["large_jpeg"] == 2 and counts["small_jpeg"] == 14 - 2 - 4
    modes = set()
    for path in sorted((root / "synthetic" / "img").iterdir()):
        with Image.open(path) as image:
            modes.add((image.format, image.mode))
        assert load_image(path, 16).mode == "RGB"
    assert {("PNG", "RGBA"), ("PNG", "L"), ("JPEG", "RGB")} <= modes
    classes = json.loads((root / "synthetic" / "classes.json").read_text(encoding="utf-8"))
    assert len(classes) == SMALL.n_classes and len(set(classes)) == len(classes)


def test_default_mix_is_mostly_small_jpegs() -> None:
    counts = describe_set(SyntheticSpec())
    assert sum(counts.values()) == 1137
    assert counts["small_jpeg"] > 0.8 * 1137 and counts["large_jpeg"] >= 20


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"large_fraction": 0.8, "png_fraction": 0.5}, {"n_classes": 0}])
def test_bad_spec(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SyntheticSpec(**kwargs)
