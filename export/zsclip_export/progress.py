"""What a waiting `zsclip-export` user sees: each stage as it starts, a bar (terminal) or a line every few
seconds (log file, CI) during long loops such as the alignment fit, and at the end a table of wall and CPU
seconds per stage with the peak resident memory."""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, TextIO

LINE_INTERVAL = 5.0  # seconds between progress lines when stderr is not a terminal


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass(frozen=True)
class StageTime:
    name: str
    wall: float
    cpu: float  # user + system seconds of every thread of this process
    peak_rss_mb: float  # peak so far, at the stage's end


class LoopProgress:
    """Progress of one loop of `total` steps, with a loss: a redrawn bar on a terminal, else a line every
    `interval` seconds (and one at the end). Call `update(step, loss)` after each step (1-based)."""

    def __init__(self, label: str, total: int, stream: Optional[TextIO] = None, interval: float = LINE_INTERVAL,
                 tty: Optional[bool] = None) -> None:
        self.label, self.total, self.interval = label, total, interval
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = time.perf_counter()
        self.last_line = self.started

    def line(self, step: int, loss: float, now: float) -> str:
        elapsed = now - self.started
        eta = elapsed / step * (self.total - step) if step else float("nan")
        return f"{self.label}: {step}/{self.total}, loss {loss:.4f}, {elapsed:.0f} s, ETA {eta:.0f} s"

    def update(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        if self.tty:
            width = 24
            filled = int(width * step / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'-' * (width - filled)}] {self.line(step, loss, now)}\033[K")
            if step >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif now - self.last_line >= self.interval or step >= self.total:
            self.last_line = now
            self.stream.write(f"zsclip-export: {self.line(step, loss, now)}\n")
            self.stream.flush()


LoopFactory = Callable[[str, int], Optional[LoopProgress]]


@dataclass
class StageClock:
    """Times named stages (`with clock.stage("vocabulary"): ...`), announcing each one through `say`;
    `loop(label, total)` gives a `LoopProgress` (or None when progress is off)."""

    say: Callable[[str], None] = lambda message: None
    loop_progress: LoopFactory = lambda label, total: None
    stages: List[StageTime] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, message: Optional[str] = None) -> Iterator[None]:
        if message != "":  # "": a quick stage, timed but not announced
            self.say(message or name)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.stages.append(StageTime(name, time.perf_counter() - wall, time.process_time() - cpu, peak_rss_mb()))

    def loop(self, label: str, total: int) -> Optional[Callable[[int, float], None]]:
        """A per-step callback `(step_index_0_based, loss)` for a loop of `total` steps, or None."""
        progress = self.loop_progress(label, total)
        if progress is None:
            return None
        return lambda index, loss: progress.update(index + 1, loss)


def stage_table(stages: List[StageTime]) -> str:
    """The stage breakdown printed at the end of an export."""
    width = max([len(s.name) for s in stages] + [5])
    lines = [f"{'stage':<{width}}  {'wall s':>7}  {'CPU s':>7}  {'peak RSS MB':>11}"]
    lines += [f"{s.name:<{width}}  {s.wall:7.1f}  {s.cpu:7.1f}  {s.peak_rss_mb:11.0f}" for s in stages]
    lines.append(f"{'total':<{width}}  {sum(s.wall for s in stages):7.1f}  {sum(s.cpu for s in stages):7.1f}  "
                 f"{max([s.peak_rss_mb for s in stages] + [peak_rss_mb()]):11.0f}")
    return "\n".join(lines)
