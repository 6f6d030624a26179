"""open_clip's `local_loss` (each rank scores its own rows against the gathered batch): on 2 gloo processes its
DDP gradient equals the full global-batch loss's gradient, for InfoNCE and SigLIP; so does fit's default (full)
mode's (before this test, that mode gave the temperature and the SigLIP bias W times their gradient)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from zsclip_train.ddp import DistContext, gather_features, gather_features_with_grad  # noqa: E402
from zsclip_train.loss import LOSSES, contrastive_loss, local_contrastive_loss  # noqa: E402

WORLD, ROWS, IN_DIM = 2, 6, 10  # rows per rank
MODES = ("full", "local", "local_without_gather_grad")


class Pair(nn.Module):
    """Two projections + temperature + bias: enough to see every gradient path of the losses."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Linear(IN_DIM, 8)
        self.text = nn.Linear(IN_DIM, 8)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.logit_bias = nn.Parameter(torch.tensor(-1.0), requires_grad=kind == "siglip")  # as fit does

    def forward(self, x_image: torch.Tensor, x_text: torch.Tensor):
        return F.normalize(self.image(x_image), dim=-1), F.normalize(self.text(x_text), dim=-1)


def inputs():
    generator = torch.Generator().manual_seed(1)
    x_image = torch.randn(WORLD * ROWS, IN_DIM, generator=generator)
    return x_image, x_image + 0.5 * torch.randn(WORLD * ROWS, IN_DIM, generator=generator)  # correlated pairs


def grads(model: nn.Module):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    ctx = DistContext(rank, WORLD, rank, torch.device("cpu"))
    x_image, x_text = inputs()
    rows = slice(rank * ROWS, (rank + 1) * ROWS)
    results = {}
    for kind in LOSSES:
        for mode in MODES:
            model = Pair(kind)
            ddp = nn.parallel.DistributedDataParallel(model)
            image, text = ddp(x_image[rows], x_text[rows])
            if mode == "full":  # what fit does without local_loss
                loss = contrastive_loss(kind, gather_features(image, ctx), gather_features(text, ctx), model.logit_scale,
                                        model.logit_bias)
                loss.backward()
            else:
                gather = gather_features_with_grad if mode == "local" else gather_features
                loss = local_contrastive_loss(kind, image, text, gather(image, ctx), gather(text, ctx), rank * ROWS,
                                              model.logit_scale, model.logit_bias)
                loss.backward()
            results[kind, mode] = (loss.item(), grads(model))
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_local_loss_values_average_to_the_global_loss():
    generator = torch.Generator().manual_seed(2)
    image = F.normalize(torch.randn(3 * 4, 8, generator=generator), dim=-1)
    text = F.normalize(torch.randn(3 * 4, 8, generator=generator), dim=-1)
    scale, bias = torch.tensor(5.0), torch.tensor(-2.0)
    for kind in LOSSES:
        shares = [local_contrastive_loss(kind, image[r * 4:(r + 1) * 4], text[r * 4:(r + 1) * 4], image, text, r * 4,
                                         scale, bias) for r in range(3)]
        assert torch.allclose(sum(shares) / 3, contrastive_loss(kind, image, text, scale, bias), atol=1e-6), kind


def test_local_loss_gradient_equals_full_loss_gradient_on_two_gloo_processes(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    x_image, x_text = inputs()
    for kind in LOSSES:
        model = Pair(kind)
        reference = contrastive_loss(kind, *model(x_image, x_text), model.logit_scale, model.logit_bias)
        reference.backward()
        expected = grads(model)
        for mode in MODES:
            mean_loss = sum(r[kind, mode][0] for r in ranks) / WORLD
            assert abs(mean_loss - reference.item()) < 1e-5, (kind, mode)
            for rank in ranks:
                got = rank[kind, mode][1]
                same = all(torch.allclose(got[n], expected[n], atol=1e-6, rtol=1e-5) for n in expected)
                # control: without the gather's backward the other ranks' rows miss their gradient
                assert same == (mode != "local_without_gather_grad"), (kind, mode, got, expected)
