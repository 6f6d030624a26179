"""`zsclip-export --out` never swaps out and deletes a file or a folder that is not a model dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from zsclip.errors import InputDataError

pytest.importorskip("torch")
from zsclip_export.cli import main  # noqa: E402
from zsclip_export.default_model import check_out_dir  # noqa: E402


@pytest.mark.parametrize("what", ["file", "folder"])
def test_export_refuses_to_replace_user_data(tmp_path: Path, what: str) -> None:
    target = tmp_path / "target"
    if what == "file":
        target.write_text("precious", encoding="utf-8")
    else:
        target.mkdir()
        (target / "photo.jpg").write_text("precious", encoding="utf-8")
    result = CliRunner().invoke(main, ["--out", str(target)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: --out ") and result.output.count("\n") == 1
    assert "Traceback" not in result.output
    kept = target if what == "file" else target / "photo.jpg"
    assert kept.read_text(encoding="utf-8") == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]  # no build folder left


def test_out_dir_under_a_file_is_refused_naming_the_option(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "notes.txt" / "deeper" / "model")])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: --out ") and "cannot write in" in result.output
    assert result.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_out_dir_may_be_missing_empty_or_a_model_dir(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "zsclip.json").write_text("{}", encoding="utf-8")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x", encoding="utf-8")
    for name in ("new", "empty", "model"):
        check_out_dir(tmp_path / name)
    with pytest.raises(InputDataError, match="not a model dir"):
        check_out_dir(tmp_path / "other")


def test_fingerprint_follows_options_and_recipe_revision(tmp_path: Path, monkeypatch) -> None:
    from zsclip_export import default_model
    from zsclip_export.default_model import ExportConfig

    base = ExportConfig(out_dir=tmp_path / "a").fingerprint()
    assert base == ExportConfig(out_dir=tmp_path / "b", force=True).fingerprint()  # where to, and --force: no
    assert base != ExportConfig(out_dir=tmp_path / "a", vocab_size=50_000).fingerprint()
    monkeypatch.setattr(default_model, "RECIPE_REVISION", default_model.RECIPE_REVISION + 1)
    assert base != ExportConfig(out_dir=tmp_path / "a").fingerprint()  # an older build is stale
