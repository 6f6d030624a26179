"""A deterministic synthetic image set shaped like real uploads, written as a contest-style data dir.

Mix (by default): mostly small JPEGs (~300x200, like Caltech 101), a few 12 MP camera photos,
and some PNGs (RGB, RGBA with transparency, grayscale). Same spec and seed -> same bytes, as long
as the Pillow/libjpeg/zlib versions are the same (they are recorded in the bench JSON).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image
from zsclip.errors import ConfigError

DATASET_NAME = "synthetic"
# 101 Russian class names (Caltech-101-like objects); the text stage's cost depends on their count.
CLASS_NAMES = (
    "самолет", "автомобиль", "мотоцикл", "лицо", "леопард", "якорь", "муравей", "бочка", "окунь", "бобр",
    "бинокль", "бонсай", "мозг", "бронтозавр", "будда", "бабочка", "фотоаппарат", "пушка", "машина", "потолочный вентилятор",
    "сороконожка", "стул", "люстра", "курица", "краб", "крокодил", "чашка", "далматин", "доллар", "дельфин",
    "стрекоза", "электрогитара", "слон", "эму", "ежевика", "фламинго", "гарфилд", "джерук", "граммофон", "гаечный ключ",
    "ежик", "вертолет", "ибис", "кенгуру", "кетч", "лампа", "ноутбук", "лотос", "омар", "мандолина",
    "минарет", "метроном", "наутилус", "осьминог", "окапи", "пагода", "панда", "пирамида", "пицца", "утконос",
    "револьвер", "носорог", "петух", "саксофон", "шхуна", "ножницы", "скорпион", "морской конек", "снупи", "футбольный мяч",
    "степлер", "морская звезда", "стегозавр", "знак стоп", "клубника", "подсолнух", "клещ", "трилобит", "зонт", "часы",
    "кувшинка", "инвалидное кресло", "дикая кошка", "виндзорский стул", "ключ", "инь и ян", "аккордеон", "пчела",
    "кран", "рак",
    "цыпленок", "кресло", "ракушка", "лебедь", "тигр", "медведь", "гитара", "пианино", "телефон", "велосипед",
    "корабль",
)


@dataclass(frozen=True)
class SyntheticSpec:
    """How many images of which kinds. Fractions are of `n`; the rest are small JPEGs."""

    n: int = 1137
    seed: int = 0
    large_fraction: float = 0.03
    png_fraction: float = 0.10
    small_size: Tuple[int, int] = (300, 200)
    large_size: Tuple[int, int] = (4000, 3000)  # 12 MP
    n_classes: int = len(CLASS_NAMES)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"synthetic image count must be >= 1, got {self.n}")
        if self.large_fraction < 0 or self.png_fraction < 0 or self.large_fraction + self.png_fraction > 1:
            raise ConfigError("large_fraction and png_fraction must be >= 0 and sum to <= 1")
        if not 1 <= self.n_classes <= len(CLASS_NAMES):
            raise ConfigError(f"n_classes must be in 1..{len(CLASS_NAMES)}")


def plan_kinds(spec: SyntheticSpec) -> List[str]:
    """The kind of every image, spread evenly (not clumped) through the set."""
    rng = np.random.RandomState(spec.seed)
    n_large = round(spec.n * spec.large_fraction)
    n_png = round(spec.n * spec.png_fraction)
    png_kinds = ["png_rgb", "png_rgba", "png_gray"]
    kinds = ["large_jpeg"] * n_large + [png_kinds[i % 3] for i in range(n_png)]
    kinds += ["small_jpeg"] * (spec.n - len(kinds))
    return [kinds[i] for i in rng.permutation(spec.n)]


def photo_like(rng: np.random.RandomState, width: int, height: int, channels: int = 3) -> np.ndarray:
    """Smooth colour field + a bright blob + sensor-like noise: compresses like a photo, not like noise."""
    coarse = rng.randint(0, 256, size=(6, 8, channels), dtype=np.uint8)
    mode = "RGB" if channels == 3 else "L"
    field = np.asarray(Image.fromarray(coarse.squeeze(), mode).resize((width, height), Image.Resampling.BICUBIC))
    field = field.reshape(height, width, channels).astype(np.int16)
    cy, cx = rng.randint(0, height), rng.randint(0, width)
    radius = max(4, min(width, height) // rng.randint(3, 8))
    ys, xs = np.ogrid[:height, :width]
    blob = ((ys - cy) ** 2 + (xs - cx) ** 2) < radius**2
    field[blob] += 60
    noise = rng.randint(-12, 13, size=(height, width, 1), dtype=np.int16)
    return np.clip(field + noise, 0, 255).astype(np.uint8)


def make_image(kind: str, rng: np.random.RandomState, spec: SyntheticSpec) -> Tuple[Image.Image, str, Dict]:
    """(image, file suffix, save options) for one kind."""
    if kind == "large_jpeg":
        width, height = spec.large_size
        if rng.randint(2):
            width, height = height, width  # portrait
        return Image.fromarray(photo_like(rng, width, height)), ".jpg", {"quality": 90}
    base_w, base_h = spec.small_size
    width = max(16, int(base_w * rng.uniform(0.7, 1.4)))
    height = max(16, int(base_h * rng.uniform(0.7, 1.4)))
    if kind == "small_jpeg":
        return Image.fromarray(photo_like(rng, width, height)), ".jpg", {"quality": int(rng.randint(75, 96))}
    if kind == "png_gray":
        return Image.fromarray(photo_like(rng, width, height, 1)[:, :, 0], "L"), ".png", {}
    rgb = photo_like(rng, width, height)
    if kind == "png_rgba":
        alpha = np.full((height, width, 1), 255, np.uint8)
        alpha[: height // 3] = 0  # a transparent band, as in cut-out product shots
        return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA"), ".png", {}
    return Image.fromarray(rgb), ".png", {}


def write_synthetic_set(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write `root/synthetic/{classes.json, img/}` (and `root/spec.json`); returns `root` (a data dir).

    Images are named `000000.jpg`, ... in generation order; each image has its own seeded
    generator, so image k does not depend on how many images come after it.
    """
    root = Path(root)
    img_dir = root / DATASET_NAME / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    classes = list(CLASS_NAMES[: spec.n_classes])
    (root / DATASET_NAME / "classes.json").write_text(json.dumps(classes, ensure_ascii=False), encoding="utf-8")
    for index, kind in enumerate(plan_kinds(spec)):
        rng = np.random.RandomState([spec.seed, index])
        image, suffix, options = make_image(kind, rng, spec)
        image.save(img_dir / f"{index:06d}{suffix}", **options)
    (root / "spec.json").write_text(json.dumps(asdict(spec), sort_keys=True) + "\n", encoding="utf-8")
    return root


def describe_set(spec: SyntheticSpec) -> Dict[str, int]:
    """Image count per kind, for the report."""
    counts: Dict[str, int] = {}
    for kind in plan_kinds(spec):
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))
