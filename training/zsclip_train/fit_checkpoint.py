"""Training checkpoints with exact resume: model, optimizer, scheduler, step, data position, every rank's RNG."""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from zsclip.atomic import atomic_dir
from zsclip.errors import InputDataError

from zsclip_train.ddp import DistContext, gather_objects

logger = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"step-(\d{8})$")


def rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest_checkpoint(out_dir: Path) -> Optional[Path]:
    """The newest complete `out_dir/checkpoints/step-NNNNNNNN` (a crash mid-save leaves only a .tmp dir)."""
    found = [p for p in (Path(out_dir) / "checkpoints").glob("step-*") if _STEP_DIR.search(p.name)]
    return max(found, key=lambda p: p.name) if found else None


def save_checkpoint(out_dir: Path, step: int, micro_step: int, model: torch.nn.Module, optimizer: Any,
                    scheduler: Any, ctx: DistContext, keep: int) -> Optional[Path]:
    """Collective: every rank must call it. Rank 0 writes the folder atomically and prunes old ones."""
    states = gather_objects(rng_state(), ctx)
    if not ctx.is_main:
        return None
    root = Path(out_dir) / "checkpoints"
    final = root / f"step-{step:08d}"
    with atomic_dir(final, build_name=f"{final.name}.tmp") as tmp:
        torch.save({"step": step, "micro_step": micro_step, "world_size": ctx.world_size, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": states},
                   tmp / "state.pt")
    for old in sorted(p for p in root.glob("step-*") if _STEP_DIR.search(p.name))[:-keep]:
        shutil.rmtree(old)
    logger.info("checkpoint %s", final)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                    ctx: DistContext) -> Dict[str, Any]:
    """Restore model, optimizer and scheduler; returns {"step", "micro_step", "rng"} (this rank's RNG state,
    to be set with `set_rng_state` once everything else is built).

    Raises:
        InputDataError: unreadable checkpoint.
    """
    try:
        state = torch.load(Path(path) / "state.pt", map_location=ctx.device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise InputDataError(f"cannot read checkpoint {path}: {exc}; delete it to resume from an older one") from None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    if state["world_size"] != ctx.world_size:
        logger.warning("checkpoint was written by %d ranks, resuming on %d: the run continues, but not "
                       "bit-exactly (data order and dropout streams differ)", state["world_size"], ctx.world_size)
    return {"step": int(state["step"]), "micro_step": int(state["micro_step"]),
            "rng": rng[ctx.rank] if ctx.rank < len(rng) else None}
