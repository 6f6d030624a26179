"""Issue 18's traps: swapped or mismatched zsclip-eval files, a dataset folder without classes.json.

Each failed before: the swapped and unrelated files exited 0 with a table of class indices; the missing
classes.json was reported as "skipping …/img: it needs classes.json and img/".
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from zsclip.cli import eval_main, predict_main
from zsclip.datadir import find_datasets
from zsclip.errors import InputDataError


@pytest.fixture()
def sample(data_dir: tuple, tmp_path: Path) -> tuple:
    """tmp/sample/{gt.json, datasets/colours/...} (the quickstart's layout) and tmp/out.json with right answers."""
    root, gt = data_dir
    sample = tmp_path / "sample"
    sample.mkdir()
    shutil.move(str(root), str(sample / "datasets"))
    (sample / "gt.json").write_text(json.dumps(gt), encoding="utf-8")
    out = tmp_path / "out.json"
    out.write_text(json.dumps(gt), encoding="utf-8")
    return sample, out


def last_error(output: str) -> str:
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert lines[-1].startswith("error: "), output
    return lines[-1]


def test_eval_in_the_right_order_scores_with_class_names(sample: tuple) -> None:
    folder, out = sample
    result = CliRunner().invoke(eval_main, [str(folder / "gt.json"), str(out)])
    assert result.exit_code == 0, result.output
    assert "mean accuracy: 1.0000" in result.output


def test_eval_swapped_files_say_which_is_which(sample: tuple) -> None:
    folder, out = sample
    result = CliRunner().invoke(eval_main, [str(out), str(folder / "gt.json")])
    assert result.exit_code == 1, result.output
    line = last_error(result.output)
    assert "swapped" in line and f"zsclip-eval {folder / 'gt.json'} {out}" in line, line


def test_eval_swapped_in_one_folder_is_told_by_the_name(sample: tuple) -> None:
    folder, out = sample
    shutil.move(str(out), str(folder / "out.json"))
    result = CliRunner().invoke(eval_main, [str(folder / "out.json"), str(folder / "gt.json")])
    assert result.exit_code == 1, result.output
    assert "swapped" in last_error(result.output)


def test_eval_data_of_another_ground_truth_is_refused(sample: tuple, tmp_path: Path) -> None:
    folder, out = sample
    other = tmp_path / "other"
    (other / "photos" / "img").mkdir(parents=True)
    (other / "photos" / "classes.json").write_text('["кот", "пёс"]', encoding="utf-8")
    (other / "photos" / "img" / "a.jpg").write_bytes(b"")
    result = CliRunner().invoke(eval_main, [str(folder / "gt.json"), str(out), "--data", str(other)])
    assert result.exit_code == 1, result.output
    line = last_error(result.output)
    assert str(other) in line and "'colours'" in line and "'photos'" in line, line


def test_eval_same_dataset_name_other_images_is_refused(sample: tuple, tmp_path: Path) -> None:
    folder, out = sample
    other = tmp_path / "other"
    shutil.copytree(folder / "datasets", other)
    for image in (other / "colours" / "img").iterdir():
        image.rename(image.with_name("x" + image.name))
    result = CliRunner().invoke(eval_main, [str(folder / "gt.json"), str(out), "--data", str(other)])
    assert result.exit_code == 1, result.output
    assert "are not in" in last_error(result.output)


def test_eval_without_data_dir_warns_and_scores(sample: tuple, tmp_path: Path) -> None:
    folder, out = sample
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(folder / "gt.json", lone / "gt.json")
    result = CliRunner().invoke(eval_main, [str(lone / "gt.json"), str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: no " in result.output and "mean accuracy: 1.0000" in result.output


def test_dataset_folder_without_classes_json_names_that_file(tiny_model_dir: Path, data_dir: tuple,
                                                             tmp_path: Path) -> None:
    root, _ = data_dir
    dataset = root / "colours"
    (dataset / "classes.json").unlink()
    result = CliRunner().invoke(predict_main, [str(dataset), str(tmp_path / "o.json"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 1, result.output
    line = last_error(result.output)
    assert f"{dataset / 'classes.json'} is missing" in line, line
    assert not (tmp_path / "o.json").exists()


def test_skipped_subfolder_names_the_missing_file(data_dir: tuple, caplog: pytest.LogCaptureFixture) -> None:
    root, _ = data_dir
    (root / "half" / "img").mkdir(parents=True)
    (root / "bare").mkdir()
    with caplog.at_level(logging.WARNING):
        assert [d.name for d in find_datasets(root)] == ["colours"]
    assert f"{root / 'half' / 'classes.json'} is missing" in caplog.text
    assert f"{root / 'bare' / 'classes.json'} and {root / 'bare' / 'img'}/ are missing" in caplog.text
    with pytest.raises(InputDataError, match="classes.json is missing"):
        find_datasets(root / "half")
