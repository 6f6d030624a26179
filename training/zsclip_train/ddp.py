"""Process-group setup for `torchrun` (NCCL on GPUs, gloo on CPU) and the feature gather of the contrastive loss."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the job described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    A plain `python` run is a job of one. `device`: "auto" (CUDA if present), "cpu" or "cuda".
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        logger.info("rank %d/%d on %s joined the %s group", rank, world_size, target, dist.get_backend())
    return DistContext(rank, world_size, local_rank, target)


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by `factor`."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # type: ignore[override]
        return grad * ctx.factor, None


def gather_features(local: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """All ranks' rows [W*B, D]; only this rank's slot carries gradient, scaled by the world size.

    Every rank computes the same global loss and back-propagates into its own rows. DDP averages:
    the towers' gradient is then the sum of the ranks' row gradients / W, hence the factor W here;
    the temperature and bias, which every rank sees whole, keep their unscaled gradient (scaling the
    loss instead gave them W times their gradient).
    """
    if not ctx.distributed:
        return local
    parts = [torch.empty_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(parts, local.detach().contiguous())
    parts[ctx.rank] = _ScaleGradient.apply(local, float(ctx.world_size))
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient of the gathered tensor and keeps this rank's slot."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(local) for _ in range(world_size)]
        dist.all_gather(parts, local.contiguous())
        ctx.rank, ctx.rows = rank, len(local)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)  # gloo has no reduce_scatter; the sum then this rank's slice is the same thing
        return grad[ctx.rank * ctx.rows: (ctx.rank + 1) * ctx.rows], None, None


def gather_features_with_grad(local: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """All ranks' rows [W*B, D] for the local loss: the backward sends each rank's gradient of every row to the
    row's owner (open_clip's gather_with_grad), so a rank's loss over its own rows trains every rank's towers.
    Collective in forward and backward: every rank must call it and back-propagate through it."""
    if not ctx.distributed:
        return local
    return _GatherWithGrad.apply(local, ctx.rank, ctx.world_size)


def gather_objects(obj: Any, ctx: DistContext) -> List[Any]:
    """Every rank's `obj`, in rank order (a list of one without a process group)."""
    if not ctx.distributed:
        return [obj]
    out: List[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size
