"""onnxruntime sessions built from a `SessionConfig`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import onnxruntime as ort

from zsclip.errors import ConfigError, ModelDirError, ProviderError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionConfig:
    """Threads and providers for every session of a model. `threads=0` lets ORT decide."""

    threads: int = 0
    providers: Tuple[str, ...] = ("CPUExecutionProvider",)

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ConfigError.for_field("threads", f"must be >= 0, got {self.threads}")
        if not self.providers:
            raise ConfigError("at least one execution provider is needed")


def create_session(path: Path, cfg: SessionConfig) -> ort.InferenceSession:
    """Open one ONNX graph with full graph optimisation.

    Raises:
        ProviderError: a requested provider is not available in this onnxruntime.
        ModelDirError: the graph cannot be loaded.
    """
    available = ort.get_available_providers()
    missing = [p for p in cfg.providers if p not in available]
    if missing:
        raise ProviderError(f"provider(s) {missing} not available; this onnxruntime has {available}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if cfg.threads:
        options.intra_op_num_threads = cfg.threads
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=list(cfg.providers))
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise ModelDirError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None
    used = session.get_providers()
    if used and used[0] != cfg.providers[0]:
        logger.warning("%s: asked for %s, onnxruntime fell back to %s", path.name, cfg.providers[0], used[0])
    return session
