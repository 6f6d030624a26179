"""SIGKILL during `zsclip-predict` never leaves a partial OUT.json."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("PIL")

OLD = {"old": {"x": 0}}

# The child writes half of OUT.json's temp file, says so, then stalls: the kill lands mid-write.
STALLING_RUNNER = """
import json, sys, time
def stalling_dump(data, handle, **kwargs):
    text = json.dumps(data, **kwargs)
    handle.write(text[: len(text) // 2])
    handle.flush()
    sys.stderr.write("HALF_WRITTEN\\n")
    sys.stderr.flush()
    time.sleep(120)
    handle.write(text[len(text) // 2 :])
json.dump = stalling_dump
from zsclip.cli import predict_main
predict_main(sys.argv[1:], prog_name="zsclip-predict")
"""

# The tiny model is too fast to hit: each decode is slowed by 10 ms so the run lasts seconds.
SLOW_RUNNER = """
import sys, time
import zsclip.predict as predict
real = predict.load_and_preprocess
def slow(path, cfg):
    time.sleep(0.01)
    return real(path, cfg)
predict.load_and_preprocess = slow
from zsclip.cli import predict_main
predict_main(sys.argv[1:], prog_name="zsclip-predict")
"""


def make_images(root: Path, n: int) -> Path:
    from PIL import Image

    dataset = root / "many"
    (dataset / "img").mkdir(parents=True)
    (dataset / "classes.json").write_text(json.dumps(["красный", "синий"], ensure_ascii=False), "utf-8")
    for i in range(n):
        Image.new("RGB", (120, 90), (200, 10, 10) if i % 2 else (10, 10, 200)).save(dataset / "img" / f"{i:04d}.jpg")
    return root


def assert_old_or_complete(out: Path, n: int) -> str:
    """OUT.json is the untouched old file or the complete new one; returns which."""
    data = json.loads(out.read_text(encoding="utf-8"))
    if data == OLD:
        return "old"
    assert len(data["many"]) == n
    return "new"


def test_kill_while_writing_keeps_old_out(tiny_model_dir: Path, tmp_path: Path) -> None:
    data_dir = make_images(tmp_path / "data", 8)
    out = tmp_path / "out.json"
    out.write_text(json.dumps(OLD), encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, "-c", STALLING_RUNNER, str(data_dir), str(out), "--model", str(tiny_model_dir)],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = child.stderr.readline()
            if not line or "HALF_WRITTEN" in line:
                break
        assert "HALF_WRITTEN" in line, "the child never reached the write"
        assert list(tmp_path.glob(".out.json.*.tmp")), "the half-written temp file should exist"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert assert_old_or_complete(out, 8) == "old"


@pytest.mark.parametrize("delay", [0.2, 1.0, 2.0, 4.0])
def test_kill_at_any_moment_leaves_no_partial_out(delay: float, tiny_model_dir: Path, tmp_path: Path) -> None:
    n = 400
    data_dir = make_images(tmp_path / "data", n)
    out = tmp_path / "out.json"
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUNNER, str(data_dir), str(out), "--model", str(tiny_model_dir), "-q"],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    if child.returncode == 0:  # finished before the kill: then it must be complete
        assert assert_old_or_complete(out, n) == "new"
    else:
        assert child.returncode == -signal.SIGKILL
        assert not out.exists()
