"""Thread counts: the CPUs this process may use, the checks on --threads/--decode-workers, the decode pool.

Stdlib only, so light callers (zsclip-bench's parent process, `--help`) can import it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from zsclip.errors import ConfigError


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask under taskset/cgroups), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_worker_counts(threads: int, decode_workers: int) -> None:
    """Raises ConfigError naming the option and its value when either count is negative (0 means automatic)."""
    if threads < 0:
        raise ConfigError(f"threads must be >= 0 (0: all cores), got {threads}")
    if decode_workers < 0:
        raise ConfigError(f"decode_workers must be >= 0 (0: one per CPU), got {decode_workers}")


def decode_pool(decode_workers: int) -> ThreadPoolExecutor:
    """The image-decoding thread pool: `decode_workers` threads, 0 for one per usable CPU."""
    return ThreadPoolExecutor(max_workers=decode_workers or available_cpus())
