"""`BenchConfig`: everything one `zsclip-bench` run needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

from zsclip.errors import ConfigError
from zsclip.workers import available_cpus

BASELINES = ("torch",)
CONTEST_IMAGES = 1137
CONTEST_BUDGET_S = 15 * 60.0


def default_threads() -> Tuple[int, ...]:
    """1 thread (the contest's worst case) and every usable core."""
    return tuple(sorted({1, available_cpus()}))


@dataclass(frozen=True)
class BenchConfig:
    """One bench run: which models and variants, on which images, with which thread counts.

    Verdict per config: projected time for `budget_images` at 1 thread (cold start included)
    < `pass_fraction` * `budget_s` is PASS, < `budget_s` is MARGIN, otherwise FAIL.
    """

    model_dirs: Tuple[Path, ...]
    data_dir: Optional[Path] = None  # None: a synthetic set of `synthetic` images
    synthetic: int = CONTEST_IMAGES
    seed: int = 0
    gt_path: Optional[Path] = None  # None: DATA/../gt.json when DATA is named `datasets`
    variants: Tuple[str, ...] = ()  # empty: every variant the manifest lists
    threads: Tuple[int, ...] = field(default_factory=default_threads)
    baseline: Optional[str] = None
    repeats: int = 3
    warmup_batches: int = 2
    batch_size: int = 32
    limit: int = 0  # measure on an evenly spaced subset of this many images; 0: all
    budget_s: float = CONTEST_BUDGET_S
    budget_images: int = CONTEST_IMAGES
    pass_fraction: float = 0.5
    json_out: Optional[Path] = None
    chart_out: Optional[Path] = None
    work_dir: Optional[Path] = None  # where the synthetic set goes; None: a temporary folder

    def __post_init__(self) -> None:
        if not self.model_dirs:
            raise ConfigError("give at least one model dir (--model DIR)")
        if self.data_dir is None and self.synthetic < 1:
            raise ConfigError.for_field("synthetic", f"(image count) must be >= 1, got {self.synthetic}")
        if not self.threads or any(t < 1 for t in self.threads):
            raise ConfigError.for_field("threads", f"(counts) must be >= 1, got {list(self.threads)}")
        if len(set(self.threads)) != len(self.threads):
            raise ConfigError.for_field("threads", f"(counts) must not repeat, got {list(self.threads)}")
        if len(set(self.variants)) != len(self.variants):
            raise ConfigError.for_field("variants", f"must not repeat, got {list(self.variants)}")
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ConfigError.for_field("baseline", f"{self.baseline!r} is not one of {list(BASELINES)}")
        for name in ("repeats", "batch_size", "budget_images"):
            if getattr(self, name) < 1:
                raise ConfigError.for_field(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_batches", "limit"):
            if getattr(self, name) < 0:
                raise ConfigError.for_field(name, f"must be >= 0, got {getattr(self, name)}")
        if self.budget_s <= 0:
            raise ConfigError.for_field("budget_s", f"must be > 0, got {self.budget_s}")
        if not 0 < self.pass_fraction <= 1:
            raise ConfigError.for_field("pass_fraction", f"must be in (0, 1], got {self.pass_fraction}")
        if "torch" in self.variants:
            raise ConfigError("'torch' is not a manifest variant; use --baseline torch")

    @property
    def min_threads(self) -> int:
        return min(self.threads)
