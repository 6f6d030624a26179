"""Training logs: CSV files always, TensorBoard as well when it is installed (rank 0 only)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

logger = logging.getLogger(__name__)


class MetricLog:
    """Appends rows to `<out_dir>/<name>.csv`; on resume, drops rows past the resumed step first."""

    def __init__(self, out_dir: Path, name: str, fields: Sequence[str], resume_step: int, tensorboard: bool = True):
        self.path = Path(out_dir) / f"{name}.csv"
        self.fields = list(fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, self.fields)
            writer.writeheader()
            writer.writerows(rows)
        self.board: Optional[Any] = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                logger.debug("tensorboard not installed: CSV logs only")
            else:
                self.board = SummaryWriter(str(Path(out_dir) / "tensorboard"))

    def write(self, row: Dict[str, Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, self.fields).writerow(row)
        if self.board is not None:
            tag = self.path.stem
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.board.add_scalar(f"{tag}/{key}", value, int(row["step"]))

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def read_metric(path: Path, column: str) -> list:
    """One numeric column of a CSV log, in order (for tests and reports)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [float(r[column]) for r in csv.DictReader(handle) if r.get(column) not in (None, "")]
