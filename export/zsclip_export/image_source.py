"""`--image-source`: the image tower of a text-only family (sentence-transformers multilingual CLIP, M-CLIP).

Accepted: a Hugging Face `CLIPModel` folder (e.g. `openai/clip-vit-base-patch32`), or a sentence-transformers
image repo whose `modules.json` holds one `CLIPModel` module (e.g. `sentence-transformers/clip-ViT-B-32`,
weights in `0_CLIPModel/`). The image tower, its preprocessing and its logit scale are those of that CLIP model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from zsclip.errors import ConfigError

from zsclip_export.families import ST_MODULES, SourceModel, read_json, resolve_source


def st_modules(folder: Path) -> List[Dict[str, Any]]:
    """modules.json of a sentence-transformers folder, each entry with its `kind` (the class name).

    Raises:
        ConfigError: unreadable or not a list of modules.
    """
    path = Path(folder) / ST_MODULES
    if not path.is_file():
        raise ConfigError(f"{folder} is not a sentence-transformers checkpoint: no {ST_MODULES}; pass the right --family")
    try:
        import json

        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise ConfigError(f"{path}: not a sentence-transformers modules list")
    return [{**m, "kind": str(m["type"]).rsplit(".", 1)[-1], "path": str(m.get("path", ""))}
            for m in sorted(modules, key=lambda m: int(m.get("idx", 0)))]


def clip_folder_of(folder: Path) -> Path:
    """The CLIPModel folder inside a sentence-transformers image repo, or `folder` itself.

    Raises:
        ConfigError: a modules.json without exactly one CLIPModel module.
    """
    if not (folder / ST_MODULES).is_file():
        return folder
    clips = [m for m in st_modules(folder) if m["kind"] == "CLIPModel"]
    if len(clips) != 1:
        raise ConfigError(f"{folder}/{ST_MODULES}: an image source needs exactly one CLIPModel module, found "
                          f"{[m['kind'] for m in st_modules(folder)]}")
    return folder / clips[0]["path"]


def load_image_source(image_source: Optional[str], family: str, suggestion: str) -> SourceModel:
    """The CLIP model behind `image_source` (its image tower, preprocessing and logit scale are used).

    Raises:
        ConfigError: no image source given (the message suggests `suggestion`), or not a CLIP checkpoint.
    """
    if image_source is None:
        raise ConfigError(f"the {family} family has no image tower of its own: pass --image-source {suggestion} "
                          "(a folder or hub id of the checkpoint's image model)")
    from zsclip_export.clip_hf import load_clip

    folder = clip_folder_of(resolve_source(image_source))
    config = folder / "config.json"
    if config.is_file() and read_json(config).get("model_type") != "clip":
        raise ConfigError(f"--image-source {image_source}: model_type {read_json(config).get('model_type')!r} is not a "
                          "CLIP model (clip); the image towers of these families are CLIP ViTs")
    return load_clip(folder)
