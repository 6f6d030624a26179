"""Medians, ratios to the torch baseline, projection and verdict from hand-made runs."""

from __future__ import annotations

import pytest
from zsclip_bench.config import BenchConfig
from zsclip_bench.summary import FAIL, MARGIN, PASS, attach_ratios, derive, median_of, project, verdict


def fake_run(total: float, n: int = 100, cold: float = 1.0) -> dict:
    stages = {"decode": total * 0.4, "preprocess": total * 0.1, "image": total * 0.4, "score": total * 0.05,
              "json": total * 0.01}
    return {"cold": {"import": cold / 2, "load": cold / 4, "text": cold / 4}, "stages": stages, "total_s": total,
            "n_images": n, "peak_rss_mb": 200.0, "batch_ms_per_image_p50": 1.0, "batch_ms_per_image_p95": 2.0}


def test_derive_scales_to_the_whole_set() -> None:
    d = derive(fake_run(2.0, n=100), n_set=1000)
    assert d["per_image_ms"] == pytest.approx(20.0)
    assert d["images_per_s"] == pytest.approx(50.0)
    assert d["set_wall_s"] == pytest.approx(1.0 + 20.0)
    assert d["other_ms_per_image"] == pytest.approx(20.0 * 0.04)
    parts = sum(d[f"{s}_ms_per_image"] for s in ("decode", "preprocess", "image", "score", "json"))
    assert parts + d["other_ms_per_image"] == pytest.approx(d["per_image_ms"])


def test_median_is_robust_to_one_slow_round() -> None:
    runs = [derive(fake_run(t), 100) for t in (2.0, 9.0, 2.2)]
    assert median_of(runs)["steady_s"] == pytest.approx(2.2)


def test_verdict_bands() -> None:
    assert verdict(449, 900, 0.5) == PASS
    assert verdict(450, 900, 0.5) == MARGIN
    assert verdict(899, 900, 0.5) == MARGIN
    assert verdict(900, 900, 0.5) == FAIL


def result(variant: str, threads: int, total: float) -> dict:
    return {"model_id": "m", "model_dir": "/m", "variant": variant, "threads": threads,
            "median": derive(fake_run(total), 100)}


def test_ratios_and_projection(tmp_path) -> None:
    results = [result("fp32", 1, 2.0), result("int8", 1, 1.0), result("torch", 1, 4.0), result("int8", 2, 0.6)]
    attach_ratios(results)
    assert results[1]["vs_torch"]["per_image_speedup"] == pytest.approx(4.0)
    assert results[2]["vs_torch"]["per_image_speedup"] == pytest.approx(1.0)
    assert results[3]["vs_torch"] is None  # no torch run at 2 threads
    cfg = BenchConfig(model_dirs=(tmp_path,), threads=(1, 2))
    rows = project(results, cfg)
    assert [r["variant"] for r in rows] == ["fp32", "int8", "torch"]
    assert rows[1]["projected_s"] == pytest.approx(1.0 + 0.010 * 1137)
    assert all(r["verdict"] == PASS for r in rows)
