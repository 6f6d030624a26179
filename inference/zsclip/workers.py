"""Thread counts: the CPUs this process may use, the checks on --threads/--decode-workers, the decode pool.

Stdlib only, so light callers (zsclip-bench's parent process, `--help`, the contest bundle's predict.sh via
`python -m zsclip.workers`) can import it.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Optional

from zsclip.errors import ConfigError

CGROUP_FS = Path("/sys/fs/cgroup")
V1_CPU_FOLDERS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def available_cpus(proc_cgroup: Path = Path("/proc/self/cgroup"), cgroup_fs: Path = CGROUP_FS) -> int:
    """CPUs this process may really use, at least 1: the affinity mask (taskset, cpusets), capped by the
    smallest cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`) of its cgroups and their ancestors.
    os.cpu_count() is the host's core count; in a container limited to one CPU it can say 64."""
    cpus = affinity_cpus()
    quota = cgroup_quota(proc_cgroup, cgroup_fs)
    if quota:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def affinity_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_quota(quota_text: str, period_text: str) -> Optional[float]:
    """CPUs granted by a quota/period pair; None for no limit ("max", -1) or nonsense."""
    if quota_text in ("max", "-1") or not period_text:
        return None
    quota, period = int(quota_text), int(period_text)
    return quota / period if quota > 0 and period > 0 else None


def cgroup_folders(proc_cgroup: Path, cgroup_fs: Path) -> Iterator[Path]:
    """Our cgroup folders (v2 unified, v1 cpu controller), deepest first, then their ancestors."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].strip("/")
        roots = [cgroup_fs] if controllers == "" else [
            cgroup_fs / name for name in V1_CPU_FOLDERS if "cpu" in controllers.split(",")
        ]
        steps = path.split("/") if path else []
        for root in roots:
            for depth in range(len(steps), -1, -1):
                yield root.joinpath(*steps[:depth])
    yield cgroup_fs
    yield cgroup_fs / "cpu"


def cgroup_quota(proc_cgroup: Path, cgroup_fs: Path) -> Optional[float]:
    """The smallest CPU quota of our cgroups and their ancestors, None when there is none."""
    limits: List[float] = []
    for folder in cgroup_folders(proc_cgroup, cgroup_fs):
        try:
            fields = (folder / "cpu.max").read_text().split()
            limit = read_quota(fields[0], fields[1] if len(fields) > 1 else "100000")
        except (OSError, ValueError, IndexError):
            try:
                quota = (folder / "cpu.cfs_quota_us").read_text().strip()
                limit = read_quota(quota, (folder / "cpu.cfs_period_us").read_text().strip())
            except (OSError, ValueError):
                limit = None
        if limit:
            limits.append(limit)
    return min(limits) if limits else None


def check_worker_counts(threads: int, decode_workers: int) -> None:
    """Raises ConfigError naming the option and its value when either count is negative (0 means automatic)."""
    if threads < 0:
        raise ConfigError.for_field("threads", f"must be >= 0 (0: all cores), got {threads}")
    if decode_workers < 0:
        raise ConfigError.for_field("decode_workers", f"must be >= 0 (0: one per CPU), got {decode_workers}")


def decode_pool(decode_workers: int) -> ThreadPoolExecutor:
    """The image-decoding thread pool: `decode_workers` threads, 0 for one per usable CPU."""
    return ThreadPoolExecutor(max_workers=decode_workers or available_cpus())


if __name__ == "__main__":  # predict.sh: THREADS="$(python -m zsclip.workers)"
    print(available_cpus())
