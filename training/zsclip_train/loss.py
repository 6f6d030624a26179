"""Contrastive losses over a global batch: symmetric InfoNCE (CLIP) and the sigmoid loss (SigLIP)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("infonce", "siglip")


def infonce_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy; row i of `image` matches row i of `text`."""
    logits = scale * image @ text.t()
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def siglip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Sigmoid loss: every (image, text) pair is a binary match / no-match problem; summed per image row."""
    logits = scale * image @ text.t() + bias
    signs = 2 * torch.eye(len(image), device=image.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(signs * logits).sum() / len(image)


def contrastive_loss(kind: str, image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                     bias: torch.Tensor) -> torch.Tensor:
    """The loss called `kind` (one of LOSSES), computed in float32 whatever the autocast dtype."""
    image, text = image.float(), text.float()
    if kind == "siglip":
        return siglip_loss(image, text, scale, bias)
    return infonce_loss(image, text, scale)


def local_contrastive_loss(kind: str, image: torch.Tensor, text: torch.Tensor, all_image: torch.Tensor,
                           all_text: torch.Tensor, offset: int, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """open_clip's `local_loss`: this rank's rows (`image`, `text`, [B, D]) scored against the gathered batch
    (`all_image`, `all_text`, [N, D], this rank's rows at `offset`), so the logits are [B, N], never [N, N].

    Returns this rank's share: the mean over ranks of these values is the global loss of `contrastive_loss`.
    Its gradient reaches the other ranks' rows only if the gather carries gradient
    (`zsclip_train.ddp.gather_features_with_grad`); then DDP's average is the exact global gradient.
    """
    image, text, all_image, all_text = image.float(), text.float(), all_image.float(), all_text.float()
    labels = torch.arange(len(image), device=image.device) + offset
    if kind == "siglip":  # the sigmoid loss is a sum over pairs: this rank's image rows cover its share of them
        logits = scale * image @ all_text.t() + bias
        signs = -torch.ones_like(logits)
        signs[torch.arange(len(image), device=image.device), labels] = 1.0
        return -F.logsigmoid(signs * logits).sum() / len(image)
    per_image = scale * image @ all_text.t()
    per_text = scale * text @ all_image.t()
    return (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2
