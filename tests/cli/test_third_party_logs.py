"""Third-party log records are never printed as zsclip's: hidden unless -v (errors always), then under their name.

Before: the CLIs' root handler printed every library's warning as `zsclip: WARNING: ...` (onnxruntime's
quantization hint among them).
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, sys
from zsclip.cli import setup_logging
setup_logging(int(sys.argv[1]), False, prog="zsclip-export")
logging.getLogger("onnxruntime.quantization").warning("consider pre-processing")
logging.warning("a library's root-logger hint")
logging.getLogger("PIL.Image").error("a library error")
logging.getLogger("zsclip_export.quantize").warning("our own warning")
"""


def run(verbose: int) -> list:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(verbose)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()


def test_library_warnings_hidden_by_default_errors_shown_under_their_name() -> None:
    assert run(0) == ["PIL.Image: ERROR: a library error", "zsclip-export: WARNING: our own warning"]


def test_with_v_library_warnings_are_shown_as_theirs() -> None:
    assert run(1) == [
        "onnxruntime.quantization: WARNING: consider pre-processing",
        "library: WARNING: a library's root-logger hint",
        "PIL.Image: ERROR: a library error",
        "zsclip-export: WARNING: our own warning",
    ]
