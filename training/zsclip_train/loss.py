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
