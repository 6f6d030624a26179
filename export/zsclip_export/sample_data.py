"""A small contest-style sample data dir made from the real photos that scikit-image ships.

    python -m zsclip_export.sample_data OUT_DIR

writes OUT_DIR/datasets/sample/{classes.json, img/} and OUT_DIR/gt.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from zsclip.errors import ConfigError

CLASSES = ["кошка", "чашка кофе", "ракета", "мотоцикл", "космонавт", "орел"]  # "орел": a class with no photo
# (skimage.data function, index into the returned tuple or None, class index)
PHOTOS: List[Tuple[str, object, int]] = [
    ("chelsea", None, 0),
    ("coffee", None, 1),
    ("rocket", None, 2),
    ("stereo_motorcycle", 0, 3),
    ("stereo_motorcycle", 1, 3),
    ("astronaut", None, 4),
]


def write_sample_data(out: Path) -> Path:
    """Write the sample; returns the `datasets` folder to pass to zsclip-predict.

    Raises:
        ConfigError: scikit-image is not installed.
    """
    try:
        import skimage.data as photos
    except ImportError:
        raise ConfigError("the sample photos come with scikit-image: pip install scikit-image") from None
    from PIL import Image

    dataset = Path(out) / "datasets" / "sample"
    (dataset / "img").mkdir(parents=True, exist_ok=True)
    (dataset / "classes.json").write_text(json.dumps(CLASSES, ensure_ascii=False), encoding="utf-8")
    gt: Dict[str, int] = {}
    for number, (name, part, label) in enumerate(PHOTOS):
        array = getattr(photos, name)()
        if part is not None:
            array = array[part]
        stem = f"{number:02d}_{name}"
        Image.fromarray(array).convert("RGB").save(dataset / "img" / f"{stem}.jpg", quality=92)
        gt[stem] = label
    (Path(out) / "gt.json").write_text(json.dumps({"sample": gt}, ensure_ascii=False, indent=1), encoding="utf-8")
    return dataset.parent


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m zsclip_export.sample_data OUT_DIR")
    print(write_sample_data(Path(sys.argv[1])))
