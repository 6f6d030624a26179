"""zsclip-embed and zsclip-label on the hostile data dir of test_hostile: same failures and decisions as predict."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
pytest.importorskip("PIL")

from click.testing import CliRunner  # noqa: E402
from test_hostile import make_hostile_data_dir  # noqa: E402
from zsclip.cli import embed_main, label_main, predict_main  # noqa: E402
from zsclip.embed import decisions_from_embeddings, load_embeddings  # noqa: E402


def test_embed_matches_predict_on_hostile_files(tiny_model_dir, tmp_path):
    root, expected, bad = make_hostile_data_dir(tmp_path / "data")
    out_json, out_npz = tmp_path / "out.json", tmp_path / "emb.npz"
    for command, args in ((predict_main, [str(root), str(out_json)]), (embed_main, [str(root), "--out", str(out_npz)])):
        result = CliRunner().invoke(command, [*args, "--model", str(tiny_model_dir)])
        assert result.exit_code == 0, result.output
    emb = load_embeddings(out_npz)
    assert sorted(emb.failed_filename.tolist()) == sorted(bad)
    assert decisions_from_embeddings(emb) == json.loads(out_json.read_text(encoding="utf-8"))


def test_label_and_review_on_hostile_files(tiny_model_dir, tmp_path):
    root, expected, bad = make_hostile_data_dir(tmp_path / "data")
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(label_main, [str(root / "hostile" / "img"), "--classes", str(root / "hostile" / "classes.json"),
                                             "--out", str(out), "--model", str(tiny_model_dir),
                                             "--review", str(tmp_path / "review")])
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8", newline="") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle)}
    assert len(rows) == len(expected) + len(bad)
    assert {f for f, row in rows.items() if row["reason"].startswith("undecodable")} == set(bad)
    assert all(rows[f]["problem"] == "1" for f in bad)
    assert (tmp_path / "review" / "index.html").is_file()


def test_new_runtime_modules_import_no_heavy_framework():
    code = (
        "import sys, zsclip.embed, zsclip.fewshot, zsclip.label, zsclip.review, zsclip.cli\n"
        "print(','.join(m for m in ('torch', 'transformers', 'optimum', 'onnx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
