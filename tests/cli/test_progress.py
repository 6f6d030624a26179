"""Progress when stderr is not a terminal (a log file, CI, the contest's runner): plain lines, not a bar.

Before: click's bar printed only its label (`predicting`) there, then nothing until the end.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from zsclip import progress
from zsclip.progress import ProgressLines, format_duration

LINE = re.compile(r"^predicting: (\d+)/6 images \((\d+)%\)")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_are_throttled_and_carry_rate_and_eta() -> None:
    clock, out = FakeClock(), io.StringIO()
    lines = ProgressLines("predicting", 1137, out, interval=5.0, clock=clock)
    clock.now += 1
    lines.update(100)  # within the interval: no line
    clock.now += 40
    lines.update(412)  # 512 done after 41 s
    clock.now += 1
    lines.update(10)
    clock.now += 50
    lines.update(615)
    lines.finish()
    assert out.getvalue().splitlines() == [
        "predicting: 0/1137 images (0%)",
        "predicting: 512/1137 images (45%), 12.5 img/s, ETA 50 s",
        "predicting: 1137/1137 images (100%), 12.4 img/s, 92 s",
    ]


def test_durations() -> None:
    assert [format_duration(s) for s in (0.4, 51, 99.6, 200, 3725)] == ["0 s", "51 s", "1 min 40 s", "3 min 20 s",
                                                                     "62 min 05 s"]


def test_predict_with_stderr_in_a_file_prints_progress_lines(tiny_model_dir: Path, data_dir: tuple,
                                                              tmp_path: Path) -> None:
    root, _ = data_dir
    log = tmp_path / "predict.log"
    with log.open("w") as stderr:
        proc = subprocess.run([sys.executable, "-c", "from zsclip.cli import predict_main; predict_main()",
                               str(root), str(tmp_path / "out.json"), "--model", str(tiny_model_dir)],
                              stderr=stderr, stdout=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, log.read_text()
    text = log.read_text()
    found = [LINE.match(line) for line in text.splitlines()]
    counts = [int(m.group(1)) for m in found if m]
    assert counts[0] == 0 and counts[-1] == 6, text
    assert "\r" not in text and "predicting: 6/6 images (100%), " in text


def test_predict_lines_every_interval_and_quiet_silences(tiny_model_dir: Path, data_dir: tuple, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from zsclip.cli import predict_main

    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)  # a line per batch
    root, _ = data_dir
    args = [str(root), str(tmp_path / "out.json"), "--model", str(tiny_model_dir), "--batch-size", "2"]
    result = CliRunner().invoke(predict_main, args)
    assert result.exit_code == 0, result.output
    counts = [int(m.group(1)) for m in map(LINE.match, result.output.splitlines()) if m]
    assert counts == [0, 2, 4, 6], result.output
    assert re.search(r"predicting: 2/6 images \(33%\), [\d.]+ img/s, ETA \d+", result.output), result.output
    quiet = CliRunner().invoke(predict_main, [*args, "-q"])
    assert quiet.exit_code == 0 and "predicting" not in quiet.output


def test_embed_prints_lines_too(tiny_model_dir: Path, data_dir: tuple, tmp_path: Path) -> None:
    from zsclip.cli import embed_main

    root, _ = data_dir
    result = CliRunner().invoke(embed_main, [str(root), "--out", str(tmp_path / "e.npz"), "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "embedding: 0/6 images (0%)" in result.output and "embedding: 6/6 images (100%), " in result.output
