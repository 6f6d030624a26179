"""The hand-off folder of a run whose towers are both transformers models: zsclip-export's `two-tower` layout.

    out_dir/final/
      two_tower.json          written by zsclip_export.hf_two_tower.save_two_tower (pooling, logit scale / bias,
                              context length)
      text/                   the text tower (save_pretrained) + its tokenizer, with prepare's query normalisation
                              (NFKC, lower case, ё -> е) in front, as a generic fast tokenizer
      vision/                 the vision tower (save_pretrained) + preprocessor_config.json
      projection.safetensors  text_projection.*, image_projection.*
      train.json              {"format": "zsclip-train-hf", "model": {ModelConfig}, "train": {...}, "zero_shot": {...}}

`zsclip-export --source out_dir/final` reads it as is; transformers loads `text/` and `vision/` as is;
`load_handoff` rebuilds the `TwoTower`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Mapping

import torch
from zsclip.atomic import atomic_dir
from zsclip.errors import ModelDirError

from zsclip_train.fit_model import ModelConfig, TwoTower

TRAIN_FILE = "train.json"
TRAIN_FORMAT = "zsclip-train-hf"


def is_handoff(path: Path) -> bool:
    return (Path(path) / TRAIN_FILE).is_file()


def save_handoff(model: TwoTower, out_dir: Path, extra: Mapping[str, Any]) -> Path:
    """Write the two-tower folder atomically (`zsclip.atomic.atomic_dir`)."""
    from transformers import AutoImageProcessor
    from zsclip_export.hf_two_tower import save_two_tower

    from zsclip_train.hf_towers import fast_tokenizer, portable_tokenizer

    cfg = model.config
    assert cfg.hf_image is not None and cfg.hf_text is not None
    out_dir = Path(out_dir)
    text_tower, image_tower = model.text_tower, model.image_tower
    with atomic_dir(out_dir, build_name=out_dir.name + ".tmp") as tmp:
        save_two_tower(tmp, text_tower.module, portable_tokenizer(fast_tokenizer(cfg.hf_text)), image_tower.module,
                       AutoImageProcessor.from_pretrained(cfg.hf_image), model.text_proj,
                       pooling=text_tower.export_pooling, logit_scale=model.scale().item(),
                       logit_bias=model.logit_bias.item(), context_length=cfg.context_length,
                       image_projection=model.image_proj, image_pooling=image_tower.pooling)
        record: Dict[str, Any] = {"format": TRAIN_FORMAT, "format_version": 1, "model": dataclasses.asdict(cfg),
                                  **extra}
        (tmp / TRAIN_FILE).write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    return out_dir


def load_handoff(path: Path) -> TwoTower:
    """Rebuild a TwoTower (eval mode) from a `save_handoff` folder: towers from text/ and vision/, projections,
    logit scale and bias.

    Raises:
        ModelDirError: missing or foreign files.
    """
    from safetensors.torch import load_file
    from zsclip_export.hf_two_tower import linear_from

    path = Path(path)
    try:
        record = json.loads((path / TRAIN_FILE).read_text(encoding="utf-8"))
        spec = json.loads((path / "two_tower.json").read_text(encoding="utf-8"))
        projections = load_file(str(path / "projection.safetensors"))
    except (OSError, json.JSONDecodeError, RuntimeError) as exc:
        raise ModelDirError(f"{path}: not a zsclip-train hand-off folder ({exc})") from None
    if record.get("format") != TRAIN_FORMAT:
        raise ModelDirError(f"{path}/{TRAIN_FILE}: format {record.get('format')!r} is not {TRAIN_FORMAT!r}")
    stored = ModelConfig(**record["model"])
    cfg = dataclasses.replace(stored, init=None, image_tower=f"hf:{path / 'vision'}", text_tower=f"hf:{path / 'text'}",
                              grad_checkpointing=False)
    model = TwoTower(cfg)
    model.image_proj, model.text_proj = linear_from(projections, "image_projection"), linear_from(projections,
                                                                                                   "text_projection")
    with torch.no_grad():
        model.logit_scale.fill_(float(torch.tensor(float(spec["logit_scale"])).log()))
        model.logit_bias.fill_(float(spec.get("logit_bias", 0.0)))
    return model.eval()
