"""INT8 recipes per tower, and the fidelity gate that decides whether an INT8 tower is kept."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
from zsclip.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize each tower and how strict the gate is.

    text: "dynamic" (INT8 weights for MatMul/Gemm and the embedding table) or "none".
    image: "static-qdq" (per-channel QDQ, calibrated; first conv and classifier kept FP32),
        "dynamic" or "none".
    min_agreement: top-1 agreement INT8 vs FP32 on the check images needed to keep an INT8 tower.
    """

    text: str = "dynamic"
    image: str = "static-qdq"
    min_agreement: float = 0.99
    calibration_images: int = 64
    keep_fp32_nodes: Tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.text not in ("dynamic", "none"):
            raise ConfigError(f"text quantization {self.text!r} is not 'dynamic' or 'none'")
        if self.image not in ("static-qdq", "dynamic", "none"):
            raise ConfigError.for_field("image", f"(quantization) {self.image!r} is not 'static-qdq', 'dynamic' or 'none'")
        if not 0.0 < self.min_agreement <= 1.0:
            raise ConfigError.for_field("min_agreement", f"must be in (0, 1], got {self.min_agreement}")

    @classmethod
    def dynamic_int8(cls) -> QuantizeConfig:
        return cls(text="dynamic", image="dynamic")

    @classmethod
    def default(cls) -> QuantizeConfig:
        return cls()


class ThirdPartyLogFilter(logging.Filter):
    """onnxruntime's quantization tools log advice ("Please consider pre-processing before quantization") on the
    root logger, which would print it as a zsclip warning: such records are hidden, or with -v (root level INFO
    or lower) shown as INFO lines saying whose they are."""

    def __init__(self, package: str) -> None:
        super().__init__()
        self.marker = f"{os.sep}{package}{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        if self.marker not in record.pathname or record.levelno >= logging.ERROR:
            return True
        if logging.getLogger().getEffectiveLevel() > logging.INFO:
            return False
        record.msg, record.args = f"{self.marker.strip(os.sep)} says: {record.getMessage()}", None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


@contextmanager
def third_party_logs(package: str = "onnxruntime") -> Iterator[None]:
    """While inside, `package`'s warnings on the root logger go through `ThirdPartyLogFilter`."""
    handlers = logging.getLogger().handlers
    log_filter = ThirdPartyLogFilter(package)
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)


def quantize_dynamic_file(source: Path, target: Path, op_types: Sequence[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with third_party_logs():
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
            extra_options={"EnableSubgraph": False},
        )


def conv_and_gemm_edges(path: Path) -> List[str]:
    """Names of the first Conv and the last Conv/Gemm/MatMul nodes: kept in FP32 by static QDQ."""
    import onnx

    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    return [n.name for n in (nodes[:1] + nodes[-2:])]


class _ArrayReader:
    def __init__(self, input_name: str, batches: List[np.ndarray]) -> None:
        self._items = iter([{input_name: b} for b in batches])

    def get_next(self):  # noqa: ANN201 - onnxruntime CalibrationDataReader protocol
        return next(self._items, None)


def quantize_static_qdq(source: Path, target: Path, input_name: str, calibration: np.ndarray, keep: Sequence[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_suffix(".pre.onnx")
    batches = [calibration[i : i + 8] for i in range(0, len(calibration), 8)]
    with third_party_logs():
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(target), _ArrayReader(input_name, batches), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=list(keep),
        )
    prepared.unlink(missing_ok=True)


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float((reference.argmax(axis=1) == candidate.argmax(axis=1)).mean())


def cosine_stats(reference: np.ndarray, candidate: np.ndarray) -> Dict[str, float]:
    a = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    b = candidate / np.maximum(np.linalg.norm(candidate, axis=1, keepdims=True), 1e-12)
    cos = (a * b).sum(axis=1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}
