"""Export tiny random checkpoints of every `--source` family into OUT/<family> (used by .ci/run).

CI then proves the lean runtime (no torch, no transformers) predicts from each exported dir.
Run from the repo root with the dev venv: `python tests/export/hf_tiny_dirs.py OUT`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from family_replicas import build_clip_image_repo, build_mclip, build_open_clip_xlmr, build_st_multilingual  # noqa: E402
from test_hf_export import build_clip, build_ruclip, build_siglip, build_two_tower, write_images  # noqa: E402
from zsclip_export.hf_export import HfExportConfig, export_hf_model  # noqa: E402


def main(out: Path) -> None:
    sources = out / "sources"
    clip = build_clip(sources / "clip")
    families = {"clip": clip, "siglip": build_siglip(sources / "siglip"), "ruclip": build_ruclip(sources / "ruclip"),
                "two-tower": build_two_tower(sources / "two", clip)}
    image_sources = {"sentence-transformers": build_clip_image_repo(sources / "st-image"), "mclip": clip}
    families.update({"sentence-transformers": build_st_multilingual(sources / "st-text"), "mclip": build_mclip(sources / "mclip"),
                     "open-clip": build_open_clip_xlmr(sources / "open-clip")})
    images = write_images(out / "images")
    for family, path in families.items():
        image_source = image_sources.get(family)
        export_hf_model(HfExportConfig(source=str(path), out_dir=out / family, quantize=True, calibration_images=images,
                                       image_source=str(image_source) if image_source else None))
        print(out / family)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
