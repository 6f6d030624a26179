"""zsclip-label: labels.csv, problem flags from disagreeing views, hostile files, the review page's data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from zsclip.cli import label_main
from zsclip.label import kmeans_assign, knn_votes

RED, GREEN, BLUE, YELLOW = (220, 20, 20), (20, 200, 30), (25, 30, 210), (230, 215, 25)


def make_folder(root: Path) -> Path:
    """3 red, 3 green, 3 blue photos, 2 yellow ones, 1 broken file."""
    from PIL import Image

    img = root / "img"
    img.mkdir(parents=True)
    for name, rgb, n in (("red", RED, 3), ("green", GREEN, 3), ("blue", BLUE, 3), ("yellow", YELLOW, 2)):
        for k in range(n):
            Image.new("RGB", (30, 20), tuple(max(0, v - 8 * k) for v in rgb)).save(img / f"{name}_{k}.jpg", quality=95)
    (img / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "classes.json").write_text(json.dumps(["красный", "зелёный", "синий"], ensure_ascii=False), encoding="utf-8")
    return root


def run_label(root: Path, model: Path, *extra: str):
    out = root / "labels.csv"
    result = CliRunner().invoke(label_main, [str(root / "img"), "--classes", str(root / "classes.json"), "--out",
                                             str(out), "--model", str(model), *extra])
    return result, out


def read_rows(path: Path) -> dict:
    with open(path, encoding="utf-8", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def test_help():
    assert CliRunner().invoke(label_main, ["--help"]).exit_code == 0


def test_labels_confidence_and_problems(tiny_model_dir, tmp_path):
    root = make_folder(tmp_path)
    result, out = run_label(root, tiny_model_dir)
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert len(rows) == 12 and "broken.jpg" in result.output
    for name, index in (("red", 0), ("green", 1), ("blue", 2)):
        for k in range(3):
            row = rows[f"{name}_{k}.jpg"]
            assert int(row["label"]) == index and 0 < float(row["confidence"]) <= 1
            assert row["problem"] == "0", row
    assert rows["broken.jpg"]["problem"] == "1" and rows["broken.jpg"]["reason"].startswith("undecodable")
    assert rows["red_0.jpg"]["class_name"] == "красный"
    assert {rows[f"yellow_{k}.jpg"]["label"] for k in range(2)} == {"0"}  # zero-shot calls yellow red


def test_disagreeing_views_are_problems():
    from zsclip.label import LabelConfig, decide_labels

    rng = np.random.default_rng(0)
    centres = np.eye(3)
    features = np.concatenate([c + 0.05 * rng.normal(size=(6, 3)) for c in centres])
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    truth = np.repeat(np.arange(3), 6)
    posteriors = np.full((18, 3), 0.05) + 0.9 * np.eye(3)[truth]
    posteriors[0] = [0.3, 0.4, 0.3]  # zero-shot gets one image of class 0 wrong, with low confidence
    cfg = LabelConfig(Path("."), Path("c.json"), Path("o.csv"), neighbours=3)
    rows = decide_labels(posteriors, features, 0.0, cfg)
    label, confidence, zero_shot, knn, kmeans, problem = rows[0]
    assert (label, zero_shot, knn, kmeans, problem) == (1, 1, 0, 0, True)
    assert not any(r[-1] for r in rows[1:])


def test_strict_and_user_errors(tiny_model_dir, tmp_path):
    root = make_folder(tmp_path)
    result, out = run_label(root, tiny_model_dir, "--strict")
    assert result.exit_code == 1 and "broken.jpg" in result.output and not out.exists()
    (root / "classes.json").write_text("{}", encoding="utf-8")
    result, _ = run_label(root, tiny_model_dir)
    assert result.exit_code == 1 and "JSON list" in result.output


def test_knn_and_kmeans_views():
    features = np.array([[1, 0], [0.99, 0.14], [0.98, 0.2], [0, 1], [0.1, 0.99], [0.95, 0.3]])
    features = features / np.linalg.norm(features, axis=1, keepdims=True)
    labels = np.array([0, 0, 0, 1, 1, 1])  # the last one is mislabelled
    confident = np.array([True, True, True, True, True, False])
    assert knn_votes(features, labels, confident, 2, 2).tolist() == [0, 0, 0, 1, 1, 0]
    assert kmeans_assign(features, labels, 10).tolist() == [0, 0, 0, 1, 1, 0]


def test_review_page_data(tiny_model_dir, tmp_path):
    from zsclip.review import review_items

    root = make_folder(tmp_path)
    result, out = run_label(root, tiny_model_dir, "--review", str(tmp_path / "review"))
    assert result.exit_code == 0, result.output
    index = tmp_path / "review" / "index.html"
    items = review_items(index)
    assert len(items) == 12 and (tmp_path / "review" / "review.js").is_file()
    labels = [it["label"] for it in items]
    assert labels == sorted(labels, key=lambda c: (c != 0, c))  # class 0 holds problems, so it comes first
    assert items[0]["file"] == "broken.jpg" and items[0]["problem"]  # problems first
    assert not any(it["problem"] for it in items[1:])
    broken = next(it for it in items if it["file"] == "broken.jpg")
    assert broken["thumb"] is None
    assert all((tmp_path / "review" / it["thumb"]).is_file() for it in items if it["thumb"])


@pytest.mark.parametrize("name", ["</script><script>alert(1)</script>.jpg"])
def test_hostile_file_names_cannot_break_the_page(tiny_model_dir, tmp_path, name):
    root = make_folder(tmp_path)
    (root / "img" / "red_0.jpg").rename(root / "img" / name.replace("/", "_"))
    result, _ = run_label(root, tiny_model_dir, "--review", str(tmp_path / "review"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "review" / "index.html").read_text(encoding="utf-8")
    assert html.count("</script>") == 2 and "<script>alert" not in html
