"""What a waiting `zsclip-export` user sees: loop progress as a bar or periodic lines, and the stage table."""

from __future__ import annotations

import io
import time

from zsclip_export.progress import LoopProgress, StageClock, stage_table


def test_loop_progress_without_a_terminal_prints_lines_with_loss_and_eta(monkeypatch) -> None:
    stream = io.StringIO()
    clock = iter([0.0, 1.0, 6.0, 7.0, 12.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    progress = LoopProgress("alignment fit", 4, stream=stream, interval=5.0, tty=False)
    for step, loss in enumerate([4.0, 3.0, 2.0, 1.5], start=1):
        progress.update(step, loss)
    lines = stream.getvalue().splitlines()
    assert lines == ["zsclip-export: alignment fit: 2/4, loss 3.0000, 6 s, ETA 6 s",
                     "zsclip-export: alignment fit: 4/4, loss 1.5000, 12 s, ETA 0 s"]


def test_loop_progress_on_a_terminal_redraws_one_bar() -> None:
    stream = io.StringIO()
    progress = LoopProgress("fit", 3, stream=stream, tty=True)
    for step in (1, 2, 3):
        progress.update(step, 1.0)
    out = stream.getvalue()
    assert out.count("\r") == 3 and out.endswith("\n") and out.count("\n") == 1
    assert "[########################] fit: 3/3, loss 1.0000" in out


def test_stage_clock_times_each_stage_and_announces_it() -> None:
    said = []
    clock = StageClock(said.append, lambda label, total: None)
    with clock.stage("vocabulary", "building the vocabulary"):
        sum(range(10000))
    with clock.stage("quick", ""):
        pass
    assert said == ["building the vocabulary"]
    assert [s.name for s in clock.stages] == ["vocabulary", "quick"]
    assert all(s.wall >= 0 and s.cpu >= 0 and s.peak_rss_mb > 0 for s in clock.stages)
    table = stage_table(clock.stages).splitlines()
    assert table[0].split() == ["stage", "wall", "s", "CPU", "s", "peak", "RSS", "MB"]
    assert table[1].startswith("vocabulary") and table[-1].startswith("total")
    assert clock.loop("fit", 3) is None
