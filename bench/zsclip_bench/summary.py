"""From raw per-round results to the numbers people read: medians, ratios, projection, verdict."""

from __future__ import annotations

import statistics
from typing import Any, Dict, List, Mapping, Optional, Sequence

from zsclip_bench.config import BenchConfig
from zsclip_bench.job import TORCH
from zsclip_bench.stages import STAGES

PASS, MARGIN, FAIL = "PASS", "MARGIN", "FAIL"


def derive(run: Mapping[str, Any], n_set: int) -> Dict[str, float]:
    """Per-run derived numbers. `n_set`: images in the whole set (the pass may cover a subset)."""
    n = max(1, int(run["n_images"]))
    total = float(run["total_s"])
    cold = sum(float(v) for v in run["cold"].values())
    derived = {
        "cold_start_s": cold,
        "steady_s": total,
        "per_image_ms": 1000 * total / n,
        "images_per_s": n / total if total > 0 else 0.0,
        "set_wall_s": cold + total / n * n_set,
        "peak_rss_mb": float(run["peak_rss_mb"]),
        "batch_ms_per_image_p50": float(run["batch_ms_per_image_p50"]),
        "batch_ms_per_image_p95": float(run["batch_ms_per_image_p95"]),
        "other_ms_per_image": 1000 * (total - sum(run["stages"].values())) / n,
    }
    for name, seconds in run["cold"].items():
        derived[f"cold_{name}_s"] = float(seconds)
    for stage in STAGES:
        derived[f"{stage}_ms_per_image"] = 1000 * float(run["stages"].get(stage, 0.0)) / n
    return derived


def median_of(runs: Sequence[Mapping[str, float]]) -> Dict[str, float]:
    """Key-wise median over rounds (each number on its own: medians need not add up exactly)."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def verdict(projected_s: float, budget_s: float, pass_fraction: float) -> str:
    """PASS under `pass_fraction` of the budget, MARGIN under the budget, else FAIL."""
    if projected_s < pass_fraction * budget_s:
        return PASS
    return MARGIN if projected_s < budget_s else FAIL


def attach_ratios(results: List[Dict[str, Any]]) -> None:
    """Set `vs_torch` on each result: torch time / this time at the same model and threads (> 1: faster)."""
    baselines = {(r["model_dir"], r["threads"]): r for r in results if r["variant"] == TORCH}
    for result in results:
        base = baselines.get((result["model_dir"], result["threads"]))
        if base is None:
            result["vs_torch"] = None
            continue
        mine, theirs = result["median"], base["median"]
        result["vs_torch"] = {
            "per_image_speedup": theirs["per_image_ms"] / max(mine["per_image_ms"], 1e-9),
            "image_stage_speedup": theirs["image_ms_per_image"] / max(mine["image_ms_per_image"], 1e-9),
            "cold_start_ratio": mine["cold_start_s"] / max(theirs["cold_start_s"], 1e-9),
            "peak_rss_ratio": mine["peak_rss_mb"] / max(theirs["peak_rss_mb"], 1e-9),
        }


def project(results: Sequence[Mapping[str, Any]], cfg: BenchConfig) -> List[Dict[str, Any]]:
    """Projected contest time per model and variant, from its run at the fewest threads (1 by default)."""
    rows = []
    for result in results:
        if result["threads"] != cfg.min_threads:
            continue
        med = result["median"]
        projected = med["cold_start_s"] + med["per_image_ms"] / 1000 * cfg.budget_images
        rows.append({
            "model_id": result["model_id"],
            "model_dir": result["model_dir"],
            "variant": result["variant"],
            "threads": result["threads"],
            "images": cfg.budget_images,
            "projected_s": projected,
            "budget_s": cfg.budget_s,
            "budget_fraction": projected / cfg.budget_s,
            "verdict": verdict(projected, cfg.budget_s, cfg.pass_fraction),
        })
    return rows


def top1_accuracy(
    predictions: Mapping[str, Mapping[str, int]], gt: Mapping[str, Mapping[str, int]]
) -> Optional[float]:
    """Mean over datasets of top-1 accuracy on the measured images (an undecodable image counts wrong)."""
    from zsclip.evaluate import evaluate

    measured = {name: {stem: gt[name][stem] for stem in labels if stem in gt.get(name, {})}
                for name, labels in predictions.items()}
    measured = {name: labels for name, labels in measured.items() if labels}
    if not measured:
        return None
    return evaluate(measured, predictions, strict=False).mean_accuracy
