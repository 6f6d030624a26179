"""A first user's mistakes: each one exit 1 and one `error: ...` line naming the culprit, never a traceback.

Ctrl-C exits 130 with one line and leaves no OUT.json behind.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import click
import pytest
from click.testing import CliRunner
from test_kill import SLOW_RUNNER as KILL_SLOW_RUNNER
from zsclip.cli import eval_main, is_interrupt, label_main, predict_main


def read_only_fs(monkeypatch: pytest.MonkeyPatch) -> None:
    """What root sees on a read-only file system: os.access says yes, creating a file fails."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def one_error_line(output: str, culprit: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    assert lines[-1].startswith("error: ") and culprit in lines[-1], output


def test_predict_into_read_only_folder_is_one_error_line(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    root, _ = data_dir
    read_only_fs(monkeypatch)
    result = CliRunner().invoke(predict_main, [str(root), str(tmp_path / "o.json"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 1
    one_error_line(result.output, str(tmp_path))
    assert "predicting" not in result.output  # failed before any work


def test_atomic_write_failure_is_an_input_error_and_leaves_nothing(tmp_path, monkeypatch):
    from zsclip.errors import InputDataError
    from zsclip.predict import write_json_atomic

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(InputDataError, match="o.json.*No space left"):
        write_json_atomic(tmp_path / "o.json", {"a": {}})
    assert list(tmp_path.iterdir()) == []


def test_label_review_dir_that_is_a_file_fails_before_work(tiny_model_dir, data_dir, tmp_path):
    root, _ = data_dir
    blocker = tmp_path / "review"
    blocker.write_text("a file", encoding="utf-8")
    args = [str(root / "colours" / "img"), "--classes", str(root / "colours" / "classes.json"),
            "--out", str(tmp_path / "labels.csv"), "--review", str(blocker), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(label_main, args)
    assert result.exit_code == 1
    one_error_line(result.output, str(blocker))
    assert not (tmp_path / "labels.csv").exists()


def test_label_given_the_dataset_folder_points_to_img(tiny_model_dir, data_dir, tmp_path):
    root, _ = data_dir
    args = [str(root / "colours"), "--classes", str(root / "colours" / "classes.json"),
            "--out", str(tmp_path / "labels.csv"), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(label_main, args)
    assert result.exit_code == 1
    one_error_line(result.output, str(root / "colours" / "img"))


@pytest.mark.parametrize("target", ["{tmp}/no/such/cm.png", "{tmp}"])
def test_eval_confusion_unwritable_is_one_error_line(tmp_path, target):
    labels = {"d": {"a": 0, "b": 1}}
    (tmp_path / "gt.json").write_text(json.dumps(labels), encoding="utf-8")
    (tmp_path / "out.json").write_text(json.dumps(labels), encoding="utf-8")
    path = target.format(tmp=tmp_path)
    result = CliRunner().invoke(eval_main, [str(tmp_path / "gt.json"), str(tmp_path / "out.json"), "--confusion", path])
    assert result.exit_code == 1
    one_error_line(result.output, path)


def test_eval_explicit_missing_data_dir_and_negative_worst(tmp_path):
    labels = {"d": {"a": 0}}
    (tmp_path / "gt.json").write_text(json.dumps(labels), encoding="utf-8")
    args = [str(tmp_path / "gt.json"), str(tmp_path / "gt.json")]
    missing = CliRunner().invoke(eval_main, [*args, "--data", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    one_error_line(missing.output, "nope")
    assert CliRunner().invoke(eval_main, [*args, "--worst", "-1"]).exit_code == 2


def bad_option_value(output: str, option: str, internal: str) -> None:
    """A usage error (the caller checks exit 2) naming the --option, never the config field behind it."""
    assert "Traceback" not in output, output
    assert f"Invalid value for '{option}'" in output.strip().splitlines()[-1], output
    assert internal not in output, output


@pytest.mark.parametrize("option, culprit", [("--threads", "threads"), ("--decode-workers", "decode_workers")])
def test_negative_threads_name_the_option(tiny_model_dir, data_dir, tmp_path, option, culprit):
    root, _ = data_dir
    result = CliRunner().invoke(predict_main, [str(root), str(tmp_path / "o.json"), option, "-1"])
    assert result.exit_code == 2
    bad_option_value(result.output, option, f"{culprit} must")
    assert "got -1" in result.output


@pytest.mark.parametrize("option, culprit", [("--threads", "threads"), ("--decode-workers", "decode_workers")])
def test_embed_and_label_name_a_negative_thread_option(tiny_model_dir, data_dir, tmp_path, option, culprit):
    from zsclip.cli import embed_main

    root, _ = data_dir
    model = ["--model", str(tiny_model_dir), option, "-1"]
    embed = CliRunner().invoke(embed_main, [str(root), "--out", str(tmp_path / "e.npz"), *model])
    label = CliRunner().invoke(label_main, [str(root / "colours" / "img"), "--classes", str(root / "colours" / "classes.json"),
                                            "--out", str(tmp_path / "l.csv"), *model])
    for result in (embed, label):
        assert result.exit_code == 2, result.output
        bad_option_value(result.output, option, f"{culprit} must")
        assert "got -1" in result.output


def test_interrupt_wrapped_in_an_import_error_is_still_an_interrupt():
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc
    except ImportError as wrapped:
        assert is_interrupt(wrapped)
    assert not is_interrupt(ImportError("no module named x"))


def test_ctrl_c_with_debug_shows_the_traceback_and_still_exits_130():
    from zsclip.cli import run_guarded

    @click.command()
    @click.option("--debug", is_flag=True)
    @run_guarded
    def interrupted_command() -> None:
        raise KeyboardInterrupt

    quiet = CliRunner().invoke(interrupted_command, [])
    assert quiet.exit_code == 130 and quiet.output.strip() == "interrupted"
    loud = CliRunner().invoke(interrupted_command, ["--debug"])
    assert loud.exit_code == 130, loud.output
    assert "Traceback" in loud.output and "KeyboardInterrupt" in loud.output and "Aborted" not in loud.output
    assert loud.output.strip().splitlines()[-1] == "interrupted"


# test_kill's slowed-down predict, announcing on stderr when it is about to start
SLOW_RUNNER = KILL_SLOW_RUNNER.replace(
    "predict_main(sys.argv", 'sys.stderr.write("READY\\n"); sys.stderr.flush()\npredict_main(sys.argv', 1)


def test_ctrl_c_during_predict_is_one_line_exit_130_and_no_out(tiny_model_dir, tmp_path):
    from PIL import Image

    dataset = tmp_path / "data" / "many"
    (dataset / "img").mkdir(parents=True)
    (dataset / "classes.json").write_text(json.dumps(["красный", "синий"], ensure_ascii=False), "utf-8")
    for i in range(300):
        Image.new("RGB", (64, 48), (200, 10, 10)).save(dataset / "img" / f"{i:04d}.jpg")
    out = tmp_path / "out.json"
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUNNER, str(tmp_path / "data"), str(out), "--model", str(tiny_model_dir),
         "--decode-workers", "1"],
        stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert child.stderr.readline().strip() == "READY"
    time.sleep(1.5)
    child.send_signal(signal.SIGINT)
    err = child.communicate(timeout=60)[1]
    assert child.returncode == 130, err
    assert "Traceback" not in err and "Aborted" not in err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert not out.exists() and not list(tmp_path.glob(".out.json.*"))


@pytest.mark.parametrize("command", ["embed", "label"])
def test_batch_size_zero_names_only_the_batch_size(data_dir, tmp_path, command):
    from zsclip.cli import embed_main

    root, _ = data_dir
    if command == "embed":
        result = CliRunner().invoke(embed_main, [str(root), "--out", str(tmp_path / "e.npz"), "--batch-size", "0"])
    else:
        result = CliRunner().invoke(label_main, [str(root / "colours" / "img"), "--classes",
                                                 str(root / "colours" / "classes.json"), "--out",
                                                 str(tmp_path / "l.csv"), "--batch-size", "0"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == "Error: Invalid value for '--batch-size': must be >= 1, got 0"
