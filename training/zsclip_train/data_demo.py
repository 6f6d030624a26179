"""A generated contest-style catalogue for tests and the CPU demo: coloured shapes with noisy Russian queries.

    python -m zsclip_train.data_demo OUT [--images N]

writes OUT/images.json (file:// URLs), OUT/metadata.json, OUT/files/*.jpg, and a zero-shot eval set
OUT/eval/{colors,shapes}/{classes.json,img/} + OUT/eval/gt.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Dict, Tuple

from PIL import Image, ImageDraw

COLORS: Dict[str, Tuple[int, int, int]] = {
    "красный": (220, 30, 30), "зелёный": (30, 170, 40), "синий": (30, 60, 220), "жёлтый": (235, 215, 30),
}
SHAPES = ("круг", "квадрат", "треугольник")
NOISE = ("картинки", "фото 2023", "скачать бесплатно", "https://example.ru/img/1.jpg", "8 (999) 123-45-67", "12345")


def draw_shape(color: str, shape: str, size: int, rng: random.Random) -> Image.Image:
    background = tuple(rng.randint(90, 160) for _ in range(3))
    image = Image.new("RGB", (size, size), background)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(image)
    extent = rng.randint(size // 3, size - 8)
    x0, y0 = rng.randint(2, size - extent - 2), rng.randint(2, size - extent - 2)
    box = (x0, y0, x0 + extent, y0 + extent)
    fill = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in COLORS[color])
    if shape == "круг":
        draw.ellipse(box, fill=fill)  # type: ignore[arg-type]
    elif shape == "квадрат":
        draw.rectangle(box, fill=fill)  # type: ignore[arg-type]
    else:
        draw.polygon([(x0, y0 + extent), (x0 + extent, y0 + extent), (x0 + extent // 2, y0)], fill=fill)  # type: ignore[arg-type]
    return image


def demo_queries(color: str, shape: str, rng: random.Random) -> list:
    queries = [f"{color} {shape}", shape, f"{color.upper()} {shape.capitalize()}!!", f"{color} цвет"]
    queries += rng.sample(NOISE, 2)
    rng.shuffle(queries)
    return queries


def make_demo_catalogue(out: Path, n_images: int = 240, size: int = 96, n_eval: int = 8, seed: int = 0) -> Path:
    """Write the catalogue under `out` and return `out`."""
    rng = random.Random(seed)
    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    with open(out / "images.json", "w", encoding="utf-8") as images, \
            open(out / "metadata.json", "w", encoding="utf-8") as metadata:
        for i in range(n_images):
            color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
            path = files / f"{i:06d}.jpg"
            draw_shape(color, shape, size, rng).save(path, quality=90)
            images.write(json.dumps({"image": f"img{i}", "url": path.resolve().as_uri()}) + "\n")
            record = {"image": f"img{i}", "queries": demo_queries(color, shape, rng)}
            metadata.write(json.dumps(record, ensure_ascii=False) + "\n")
    gt: Dict[str, Dict[str, int]] = {"colors": {}, "shapes": {}}
    for name, classes in (("colors", list(COLORS)), ("shapes", list(SHAPES))):
        (out / "eval" / name / "img").mkdir(parents=True, exist_ok=True)
        (out / "eval" / name / "classes.json").write_text(json.dumps(classes, ensure_ascii=False), encoding="utf-8")
        for j in range(n_eval * len(classes)):
            label = j % len(classes)
            color = classes[label] if name == "colors" else rng.choice(list(COLORS))
            shape = classes[label] if name == "shapes" else rng.choice(SHAPES)
            draw_shape(color, shape, size, rng).save(out / "eval" / name / "img" / f"e{j:04d}.jpg", quality=90)
            gt[name][f"e{j:04d}"] = label
    (out / "eval" / "gt.json").write_text(json.dumps(gt, ensure_ascii=False), encoding="utf-8")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_demo_catalogue(args.out, args.images, seed=args.seed))
