"""Train tiny `hf:` towers for a few steps and export the hand-off into OUT/trained-two-tower (used by .ci/run).

CI then proves the lean runtime (no torch, no transformers) predicts from a model dir that came out of
`zsclip-train fit` -> `zsclip-export --source run/final --quantize`.
Run from the repo root with the dev venv: `python tests/training/hf_handoff_dir.py OUT`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from zsclip_export.hf_export import HfExportConfig, export_hf_model
from zsclip_train.data_demo import make_demo_catalogue
from zsclip_train.download import DownloadConfig, download_images
from zsclip_train.fit import TrainConfig, fit_model
from zsclip_train.fit_model import ModelConfig
from zsclip_train.queries import PrepareConfig, prepare_dataset
from zsclip_train.tiny_towers import write_tiny_towers


def main(out: Path) -> None:
    work = out / "trained-work"
    cat = make_demo_catalogue(work / "cat", n_images=64, size=40, n_eval=2)
    download_images(DownloadConfig(images=cat / "images.json", out_dir=work / "shards", concurrency=4, retries=0,
                                   min_side=32, resize_side=40, shard_size=64))
    prepare_dataset(PrepareConfig(metadata=cat / "metadata.json", shard_dir=work / "shards", out_dir=work / "prep",
                                  vocab_size=200))
    towers = write_tiny_towers(work / "towers", image_size=32)
    model = ModelConfig(image_tower=f"hf:{towers['vision']}", text_tower=f"hf:{towers['text']}", embed_dim=32)
    result = fit_model(TrainConfig(data=work / "prep", out_dir=work / "run", model=model, batch_size=16, steps=8,
                                   warmup_steps=1, num_workers=0, checkpoint_every=8, device="cpu", precision="fp32"))
    export_hf_model(HfExportConfig(source=str(result.final_dir), out_dir=out / "trained-two-tower", quantize=True,
                                   force=True, calibration_images=cat / "eval" / "colors" / "img"))
    print(out / "trained-two-tower")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
