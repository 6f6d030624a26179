"""`Job`: one configuration to measure. Plain values, so it crosses a process boundary as JSON."""

from __future__ import annotations

from dataclasses import dataclass

TORCH = "torch"  # the variant name of the PyTorch eager baseline


@dataclass(frozen=True)
class Job:
    """Model dir, variant (a manifest variant or "torch"), threads and the images to run."""

    model_dir: str
    variant: str
    threads: int
    data_dir: str
    batch_size: int = 32
    warmup_batches: int = 2
    limit: int = 0
    return_predictions: bool = False

    @property
    def key(self) -> str:
        return f"{self.model_dir}|{self.variant}|{self.threads}"
