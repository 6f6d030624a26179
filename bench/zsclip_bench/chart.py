"""A PNG bar chart of the report (pillow only): per configuration, ms per image stacked by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from zsclip.errors import InputDataError

from zsclip_bench.stages import STAGES

COLOURS = {
    "decode": (70, 130, 180), "preprocess": (100, 180, 220), "image": (220, 110, 50),
    "score": (120, 180, 90), "json": (150, 150, 150), "other": (210, 210, 210),
}
ROW, LABEL_W, BAR_W, MARGIN = 22, 260, 520, 12


def render_chart(report: Mapping[str, Any], path: Path) -> None:
    """Horizontal stacked bars (decode, preprocess, image, score, json, other) with a legend.

    Raises:
        InputDataError: `path` cannot be written.
    """
    from PIL import Image, ImageDraw

    results = report["results"]
    parts = [*STAGES, "other"]
    totals = [r["median"]["per_image_ms"] for r in results] or [1.0]
    scale = BAR_W / max(max(totals), 1e-9)
    height = MARGIN * 3 + ROW * (len(results) + 2)
    image = Image.new("RGB", (LABEL_W + BAR_W + 120, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), "ms per image by stage (median)", fill="black")
    for index, result in enumerate(results):
        y = MARGIN * 2 + ROW * (index + 1)
        label = f"{result['model_id'][:24]} {result['variant']} t{result['threads']}"
        draw.text((MARGIN, y + 4), label, fill="black")
        x = float(LABEL_W)
        for part in parts:
            width = max(0.0, result["median"][f"{part}_ms_per_image"]) * scale
            draw.rectangle([x, y, x + width, y + ROW - 4], fill=COLOURS[part])
            x += width
        draw.text((x + 6, y + 4), f"{result['median']['per_image_ms']:.1f}", fill="black")
    legend_y, x = height - ROW, LABEL_W
    for part in parts:
        draw.rectangle([x, legend_y, x + 10, legend_y + 10], fill=COLOURS[part])
        draw.text((x + 14, legend_y), part, fill="black")
        x += 14 + 8 * len(part) + 12
    try:
        image.save(path, format="PNG")
    except OSError as exc:
        raise InputDataError(f"cannot write the chart {path} ({exc.strerror or exc})") from None
