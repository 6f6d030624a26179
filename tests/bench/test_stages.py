"""The harness's accounting: stages sum to the total, warm-up is not counted, subsets are deterministic."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from zsclip.datadir import find_datasets
from zsclip_bench import stages
from zsclip_bench.job import Job
from zsclip_bench.stages import STAGES, run_job, select_images


def job_for(model_dir: Path, data_dir: Path, **kwargs) -> Job:
    return Job(str(model_dir), kwargs.pop("variant", "fp32"), 1, str(data_dir), **kwargs)


def test_stage_times_sum_to_total(tiny_model_dir: Path, data_dir: tuple) -> None:
    result = run_job(job_for(tiny_model_dir, data_dir[0], batch_size=2, warmup_batches=1))
    staged = sum(result["stages"].values())
    assert set(result["stages"]) == set(STAGES)
    assert all(t >= 0 for t in result["stages"].values())
    assert staged <= result["total_s"]
    assert result["total_s"] - staged < max(0.01, 0.1 * result["total_s"])  # loop overhead only
    assert result["n_images"] == 6 and result["n_failed"] == 0 and result["warmup_images"] == 2
    assert result["peak_rss_mb"] > 10


def test_warmup_is_excluded(tiny_model_dir: Path, data_dir: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder whose first call is slow (as a real first inference is) must not show it in the pass."""
    real = stages.make_encoder
    calls = []

    def slow_first(model, variant, threads):
        encode, mine = real(model, variant, threads), []

        def wrapped(pixels: np.ndarray) -> np.ndarray:
            calls.append(len(pixels))
            mine.append(len(pixels))
            if len(mine) == 1:
                time.sleep(0.3)
            return encode(pixels)

        return wrapped

    monkeypatch.setattr(stages, "make_encoder", slow_first)
    result = run_job(job_for(tiny_model_dir, data_dir[0], batch_size=3, warmup_batches=1))
    assert len(calls) == 1 + 2  # one warm-up batch, then every batch of the pass
    assert result["stages"]["image"] < 0.25
    no_warmup = run_job(job_for(tiny_model_dir, data_dir[0], batch_size=3, warmup_batches=0))
    assert no_warmup["stages"]["image"] >= 0.3


def test_predictions_and_failures(tiny_model_dir: Path, data_dir: tuple) -> None:
    root, gt = data_dir
    (root / "colours" / "img" / "broken.jpg").write_bytes(b"not an image")
    result = run_job(job_for(tiny_model_dir, root, variant="int8", return_predictions=True))
    assert result["n_failed"] == 1
    predictions = result["predictions"]["colours"]
    assert predictions.pop("broken") == -1
    assert predictions == gt["colours"]


def test_select_images_limit_is_even_and_deterministic(data_dir: tuple) -> None:
    datasets = find_datasets(data_dir[0])
    every = select_images(datasets, 0)
    assert len(every) == 6
    picked = select_images(datasets, 3)
    assert picked == select_images(datasets, 3) and len(picked) == 3
    assert picked[0] == every[0] and picked[-1] == every[-1]


def test_mirror_matches_predict_dir(tiny_model_dir: Path, data_dir: tuple, tmp_path: Path) -> None:
    """The timed stage-by-stage pass predicts exactly what zsclip-predict predicts."""
    from zsclip.predict import PredictConfig, predict_dir

    root, _ = data_dir
    report = predict_dir(PredictConfig(root, tmp_path / "out.json", model_dir=tiny_model_dir, variant="fp32"))
    result = run_job(job_for(tiny_model_dir, root, batch_size=4, return_predictions=True))
    assert result["predictions"] == report.predictions
