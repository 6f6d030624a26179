"""What the numbers were measured on: versions, CPU model and ISA flags, model-file hashes."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Set

from zsclip.workers import available_cpus

# ISA extensions that decide INT8/FP32 speed on x86 (VNNI, AMX) and ARM (dotprod, i8mm).
CPU_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "amx_tile", "amx_int8", "amx_bf16", "asimddp", "i8mm",
)
PACKAGES = ("zsclip", "onnxruntime", "numpy", "pillow", "tokenizers", "click", "torch")


def read_cpuinfo(text: Optional[str] = None) -> Dict[str, Any]:
    """CPU model name and the presence of each of `CPU_FLAGS` (from /proc/cpuinfo on Linux)."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    model = platform.processor() or platform.machine()
    flags: Set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model": model, "flags": {flag: flag in flags for flag in CPU_FLAGS}}


def package_version(name: str) -> Optional[str]:
    """Installed version of a distribution, None when it is not installed (torch is optional)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_system_info() -> Dict[str, Any]:
    """Versions and CPU facts for the bench JSON. Does not import torch (metadata only)."""
    cpu = read_cpuinfo()
    cpu.update(logical_cpus=os.cpu_count(), usable_cpus=available_cpus())
    from PIL import features

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in PACKAGES},
        "codecs": {"libjpeg_turbo": features.version("libjpeg_turbo"), "zlib": features.version("zlib")},
        "cpu": cpu,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }

