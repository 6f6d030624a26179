"""zsclip_export: builds zsclip model directories (ONNX towers, INT8 variants, manifest) from PyTorch models."""

from __future__ import annotations

from zsclip.errors import ZsclipError


class ExportMismatchError(ZsclipError):
    """The exported ONNX graph does not reproduce the PyTorch model."""


class QuantizationMismatchError(ZsclipError):
    """The INT8 graph disagrees with FP32 beyond the fidelity gate."""
