"""PyTorch -> ONNX export of the two towers, and ONNX-vs-PyTorch checks."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from zsclip.manifest import IOConfig

from zsclip_export import ExportMismatchError

logger = logging.getLogger(__name__)
OPSET = 17


def export_image_tower(module: torch.nn.Module, path: Path, image_size: int, io: IOConfig) -> None:
    example = torch.randn(2, 3, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (example,), str(path), input_names=[io.image_input], output_names=[io.image_output],
            dynamic_axes={io.image_input: {0: "batch"}, io.image_output: {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )


def export_text_tower(module: torch.nn.Module, path: Path, io: IOConfig) -> None:
    ids = torch.tensor([[5, 6, 7], [8, 0, 0]], dtype=torch.int64)
    mask = (ids > 0).to(torch.int64)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (ids, mask), str(path),
            input_names=[io.text_input_ids, io.text_attention_mask], output_names=[io.text_output],
            dynamic_axes={
                io.text_input_ids: {0: "batch", 1: "sequence"},
                io.text_attention_mask: {0: "batch", 1: "sequence"},
                io.text_output: {0: "batch"},
            },
            opset_version=OPSET, dynamo=False,
        )


def run_onnx(path: Path, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def max_relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    scale = max(float(np.abs(reference).max()), 1e-12)
    return float(np.abs(reference - candidate).max() / scale)


def check_against_torch(
    name: str, module: torch.nn.Module, path: Path, inputs: Sequence[torch.Tensor], input_names: Sequence[str],
    tolerance: float, allow_mismatch: bool,
) -> float:
    """Max relative error of the ONNX graph vs PyTorch on `inputs`.

    Raises:
        ExportMismatchError: error above `tolerance` (unless `allow_mismatch`).
    """
    with torch.no_grad():
        reference = module.eval()(*inputs).numpy()
    candidate = run_onnx(path, {n: t.numpy() for n, t in zip(input_names, inputs)})
    error = max_relative_error(reference, candidate)
    logger.info("%s: ONNX FP32 vs PyTorch max relative error %.2e", name, error)
    if error > tolerance and not allow_mismatch:
        raise ExportMismatchError(
            f"{name}: ONNX differs from PyTorch by {error:.2e} (> {tolerance:.0e}); pass --allow-mismatch to keep it"
        )
    return error
