"""`zsclip-train fit CONFIG`: contrastive (LiT) training of the two towers, one process per GPU under torchrun.

    torchrun --nproc-per-node 8 -m zsclip_train.cli fit run.toml     # one node, 8 GPUs
    zsclip-train fit run.toml                                        # one process (CPU or one GPU)

Resume is automatic: a re-run with the same `out_dir` continues from the newest checkpoint and
reproduces the uninterrupted run exactly (same world size). The final model goes to `out_dir/final`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from zsclip.errors import ConfigError

from zsclip_train.config_types import type_error
from zsclip_train.fit_model import ModelConfig
from zsclip_train.hf_towers import resolve_hf_paths
from zsclip_train.loss import LOSSES

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
PATH_FIELDS = ("data", "out_dir", "tokenizer", "eval_dir", "eval_gt", "feature_cache")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Paths in a config file are relative to that file."""

    data: Path  # a `zsclip-train prepare` output
    out_dir: Path
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: Optional[Path] = None  # default: data/tokenizer.json
    loss: str = "infonce"
    local_loss: bool = False  # each rank scores its rows against the gathered batch: [B, N] logits, not [N, N]
    feature_cache: Optional[Path] = None  # `zsclip-train cache-features` output: train a locked image tower from it
    batch_size: int = 256  # per process and micro-step
    accum_steps: int = 1  # micro-steps per optimizer step (negatives stay within a micro-step)
    steps: int = 10000
    warmup_steps: int = 500
    lr: float = 1e-3
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.05
    grad_clip: float = 1.0  # 0: off
    precision: str = "auto"  # bf16 autocast on CUDA when supported
    device: str = "auto"
    num_workers: int = 4
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = True
    stop_at_step: Optional[int] = None  # end this process at that step (time-sliced or preemptible jobs)
    eval_dir: Optional[Path] = None
    eval_gt: Optional[Path] = None  # default: eval_dir/gt.json
    eval_every: int = 0  # 0: only at the end
    eval_prompts: Tuple[str, ...] = ("{}",)

    def __post_init__(self) -> None:
        wrong_type = type_error(self)
        if wrong_type:
            raise ConfigError(wrong_type)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r} is not one of {LOSSES}")
        if self.precision not in PRECISIONS or self.device not in DEVICES:
            raise ConfigError(f"precision must be one of {PRECISIONS} and device one of {DEVICES}")
        if min(self.batch_size, self.accum_steps, self.steps, self.log_every, self.checkpoint_every,
               self.keep_checkpoints) < 1:
            raise ConfigError("batch_size, accum_steps, steps, log_every, checkpoint_every and keep_checkpoints "
                              "must be >= 1")
        if not 0 <= self.warmup_steps < self.steps or self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("need 0 <= warmup_steps < steps, lr > 0 and 0 <= min_lr_ratio <= 1")
        if self.num_workers < 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.eval_every < 0:
            raise ConfigError("num_workers, weight_decay, grad_clip and eval_every must be >= 0")
        if self.stop_at_step is not None and not 1 <= self.stop_at_step <= self.steps:
            raise ConfigError(f"stop_at_step must be in 1..steps ({self.steps})")
        if self.tokenizer is not None and self.model.hf_text is not None:
            raise ConfigError("tokenizer is the embedding bag's; an hf: text tower tokenizes with its own tokenizer")
        if not self.eval_prompts or any("{}" not in p for p in self.eval_prompts):
            raise ConfigError("eval_prompts must be templates holding '{}'")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Path = Path(".")) -> TrainConfig:
        """Build from parsed JSON/TOML: a `model` table, paths relative to `base`.

        Raises:
            ConfigError: unknown keys or bad values.
        """
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        try:
            model = ModelConfig(**resolve_hf_paths(data.pop("model", {}), Path(base)))
        except TypeError as exc:
            raise ConfigError(f"bad [model] table: {exc}") from None
        for key in PATH_FIELDS:
            if data.get(key) is not None:
                data[key] = Path(base) / Path(data[key]).expanduser()
        if "eval_prompts" in data:
            data["eval_prompts"] = tuple(data["eval_prompts"])
        if "data" not in data or "out_dir" not in data:
            raise ConfigError("the training config needs `data` (a prepared dir) and `out_dir`")
        return cls(model=model, **data)


def load_train_config(path: Path) -> TrainConfig:
    """Read a JSON (.json) or TOML (other suffixes) training config.

    Raises:
        ConfigError: unreadable file, syntax error, unknown keys, bad values.
    """
    import tomllib

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read training config {path}: {exc}") from None
    return TrainConfig.from_dict(data, base=path.parent)


@dataclass(frozen=True)
class FitResult:
    """What a `fit_model` call ended with."""

    step: int
    loss: float
    final_dir: Optional[Path]
    scores: Mapping[str, float]

    def __str__(self) -> str:
        where = f"model in {self.final_dir}" if self.final_dir else "stopped early, resume with the same command"
        scores = ", ".join(f"{k} {v:.3f}" for k, v in self.scores.items())
        return f"step {self.step}, loss {self.loss:.4f}; {where}" + (f"; zero-shot top-1: {scores}" if scores else "")


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine to `min_lr_ratio` at `steps`."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def fit_model(cfg: TrainConfig) -> FitResult:
    """Train (or resume) the run described by `cfg`; see the module docstring.

    Raises:
        ConfigError, InputDataError: bad config or data.
    """
    from zsclip_train.ddp import setup_distributed, teardown_distributed
    from zsclip_train.fit_loop import run_training

    ctx = setup_distributed(cfg.device)
    try:
        return run_training(cfg, ctx)
    finally:
        teardown_distributed()


def autocast_context(cfg: TrainConfig, device: Any) -> contextlib.AbstractContextManager:
    import torch

    use_bf16 = cfg.precision == "bf16" or (
        cfg.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def train_summary(cfg: TrainConfig, step: int, started: float) -> Dict[str, Any]:
    return {"steps": step, "loss": cfg.loss, "batch_size": cfg.batch_size, "accum_steps": cfg.accum_steps,
            "seconds": round(time.time() - started, 1), "data": str(cfg.data)}
