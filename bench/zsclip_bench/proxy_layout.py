"""Writing proxy data sets in the contest layout (`datasets/<name>/{classes.json, img/}` + `gt.json`).

Shared by the proxy builders (`tux_proxy`, `gcompris_proxy`): pictures are re-encoded as JPEG pasted onto
white by the runtime's own decoder, an undecodable one is left out with a warning (and out of gt.json).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Tuple

from zsclip.errors import InputDataError

logger = logging.getLogger(__name__)

FULL_SIZE = 1 << 16  # no early reduction: pictures are written at their own size


def check_new_dir(target: Path) -> None:
    """A proxy is written into a new (or empty) folder only.

    Raises:
        InputDataError: `target` exists and is a file or a non-empty folder.
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputDataError(f"{target} exists and is not an empty folder; give a new folder")


def paste_on_white(picture: Path, target: Path) -> bool:
    """Write the picture pasted onto white as JPEG (`zsclip.preprocess.load_image` composites transparency
    onto white); False (with a warning) when it does not decode."""
    from zsclip.preprocess import ImageDecodeError, load_image

    try:
        image = load_image(picture, target_size=FULL_SIZE)
    except ImageDecodeError as exc:
        logger.warning("%s: not a decodable picture (%s), left out", picture, exc)
        return False
    image.save(target, quality=95)
    return True


def write_dataset(folder: Path, classes: List[str], items: List[Tuple[Path, int]]) -> Dict[str, int]:
    """classes.json + img/NNNN.jpg; returns stem -> class index of the images written."""
    (folder / "img").mkdir(parents=True)
    (folder / "classes.json").write_text(json.dumps(classes, ensure_ascii=False), encoding="utf-8")
    labels = {}
    for i, (picture, label) in enumerate(items):
        stem = f"{i:04d}"
        if paste_on_white(picture, folder / "img" / f"{stem}.jpg"):
            labels[stem] = label
    return labels


def write_gt(path: Path, gt: Dict[str, Dict[str, int]]) -> None:
    path.write_text(json.dumps(gt, ensure_ascii=False), encoding="utf-8")
