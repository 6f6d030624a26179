"""zsclip_bench: end-to-end speed and accuracy of zsclip model directories, variants compared inside one run."""

from __future__ import annotations

from zsclip_bench.config import BenchConfig

__all__ = ["BenchConfig", "run_bench"]


def __getattr__(name: str):  # noqa: ANN202 - lazy: keep `import zsclip_bench` light
    if name == "run_bench":
        from zsclip_bench.runner import run_bench

        return run_bench
    raise AttributeError(name)
