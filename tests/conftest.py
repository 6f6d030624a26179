"""Shared fixtures: a tiny model directory and a tiny contest-style data dir, both generated."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

COLOURS = {"красный": (220, 20, 20), "зеленый": (20, 200, 30), "синий": (25, 30, 210)}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def make_data_dir(root: Path) -> tuple:
    """DATA/colours/{classes.json, img/} with 2 images per colour; returns (data_dir, gt)."""
    from PIL import Image

    dataset = root / "colours"
    (dataset / "img").mkdir(parents=True)
    classes = ["Красный", "зелёный", "синий"]
    (dataset / "classes.json").write_text(json.dumps(classes, ensure_ascii=False), encoding="utf-8")
    gt = {}
    for index, (name, rgb) in enumerate(COLOURS.items()):
        for k in range(2):
            stem = f"{name}_{k}"
            Image.new("RGB", (40 + 10 * k, 30), rgb).save(dataset / "img" / f"{stem}.jpg", quality=95)
            gt[stem] = index
    return root, {"colours": gt}


@pytest.fixture()
def data_dir(tmp_path: Path) -> tuple:
    return make_data_dir(tmp_path / "data")
