"""`run_bench`: every configuration of every model, interleaved over rounds, in one run."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from zsclip.datadir import find_datasets
from zsclip.errors import InputDataError
from zsclip.manifest import MANIFEST_NAME, load_manifest, sha256_of

from zsclip_bench.config import BenchConfig
from zsclip_bench.job import TORCH, Job
from zsclip_bench.summary import attach_ratios, derive, median_of, project, top1_accuracy
from zsclip_bench.synthetic import SyntheticSpec, describe_set, write_synthetic_set
from zsclip_bench.system_info import collect_system_info

logger = logging.getLogger(__name__)

SCHEMA = "zsclip-bench/1"
Progress = Callable[[int, int, Job], None]
RunJob = Callable[[Job], Dict[str, Any]]


def describe_model(model_dir: Path) -> Dict[str, Any]:
    """Identity of a model dir for the report: id, manifest hash, per-file hashes, provenance."""
    manifest = load_manifest(model_dir, verify=True)
    return {
        "model_dir": str(model_dir),
        "model_id": manifest.model_id,
        "family": manifest.family,
        "manifest_sha256": sha256_of(Path(model_dir) / MANIFEST_NAME),
        "files": dict(manifest.files),
        "variants": {name: dataclasses.asdict(v) for name, v in manifest.variants.items()},
        "image_size": manifest.preprocess.image_size,
        "provenance": dict(manifest.provenance),
    }


def plan_jobs(cfg: BenchConfig, data_dir: Path, want_predictions: bool) -> Tuple[List[Job], List[str]]:
    """Jobs for every model x variant (x torch baseline) x thread count, and notes on what was skipped.

    Raises:
        ModelDirError: a model dir is invalid or lacks a requested variant.
    """
    from zsclip_bench.torch_baseline import baseline_unavailable

    jobs, notes = [], []
    for model_dir in cfg.model_dirs:
        manifest = load_manifest(model_dir, verify=False)  # verified by describe_model
        variants = list(cfg.variants or manifest.variants)
        for name in variants:
            manifest.variant(name)  # raises ModelDirError naming the variants it has
        notes += shared_image_files(manifest.model_id, {name: manifest.variants[name].image_file for name in variants})
        if cfg.baseline == TORCH:
            reason = baseline_unavailable(manifest)
            if reason:
                notes.append(f"torch baseline skipped for {manifest.model_id}: {reason}")
            else:
                variants.append(TORCH)
        for variant in variants:
            for threads in cfg.threads:
                jobs.append(Job(str(model_dir), variant, threads, str(data_dir), cfg.batch_size,
                                cfg.warmup_batches, cfg.limit, want_predictions))
    return jobs, notes


def shared_image_files(model_id: str, image_files: Dict[str, str]) -> List[str]:
    """Notes for variants that run the same image graph (e.g. int8 kept the fp32 tower after its gate)."""
    by_file: Dict[str, List[str]] = {}
    for variant, file in image_files.items():
        by_file.setdefault(file, []).append(variant)
    return [f"{model_id}: variants {', '.join(v)} share the image tower {f}; their image-stage difference is noise"
            for f, v in by_file.items() if len(v) > 1]


def run_rounds(
    jobs: List[Job], repeats: int, run_job: RunJob, on_progress: Optional[Progress] = None
) -> Tuple[Dict[str, List[Dict[str, Any]]], List[str]]:
    """Each round runs every job once; the order rotates per round so drift hits every job alike.

    A torch-baseline job that fails with a ZsclipError is dropped with a note; any other error propagates.
    """
    from zsclip.errors import ZsclipError

    runs: Dict[str, List[Dict[str, Any]]] = {job.key: [] for job in jobs}
    notes: List[str] = []
    active, done, total = list(jobs), 0, len(jobs) * repeats
    for round_index in range(repeats):
        shift = round_index % max(1, len(active))
        for job in active[shift:] + active[:shift]:
            job_now = job if round_index == 0 else dataclasses.replace(job, return_predictions=False)
            try:
                runs[job.key].append(run_job(job_now))
            except ZsclipError as exc:
                if job.variant != TORCH:
                    raise
                notes.append(f"torch baseline dropped for {job.model_dir} at {job.threads} thread(s): {exc}")
                active = [j for j in active if j.key != job.key]
                runs.pop(job.key, None)
            done += 1
            if on_progress:
                on_progress(done, total, job)
    return runs, notes


def read_gt(cfg: BenchConfig) -> Optional[Dict[str, Dict[str, int]]]:
    """Ground truth for top-1: --gt, else DATA/../gt.json when DATA is a `datasets` folder."""
    from zsclip.evaluate import read_labels

    path = cfg.gt_path
    if path is None and cfg.data_dir is not None and Path(cfg.data_dir).name == "datasets":
        candidate = Path(cfg.data_dir).parent / "gt.json"
        path = candidate if candidate.is_file() else None
    return read_labels(path, "ground truth") if path else None


def run_bench(cfg: BenchConfig, on_progress: Optional[Progress] = None, run_job: Optional[RunJob] = None) -> Dict[str, Any]:
    """Measure every configuration of `cfg` and return the report (also written to `cfg.json_out`).

    `run_job` defaults to one fresh subprocess per job and round (own cold start, own peak RSS).

    Raises:
        ModelDirError: a model dir is invalid or lacks a requested variant.
        InputDataError: the data dir, gt.json, --json or --chart path is unusable.
    """
    from zsclip.predict import check_out_path

    from zsclip_bench.worker import run_job_in_subprocess

    for out in (cfg.json_out, cfg.chart_out):  # fail before minutes of measuring, not after
        if out:
            check_out_path(Path(out))
    run_job = run_job or run_job_in_subprocess
    started = datetime.datetime.now(datetime.timezone.utc)
    models = [describe_model(Path(d)) for d in cfg.model_dirs]
    with ExitStack() as stack:
        data_dir, data = prepare_data(cfg, stack)
        gt = read_gt(cfg)
        jobs, notes = plan_jobs(cfg, data_dir, want_predictions=gt is not None)
        runs, round_notes = run_rounds(jobs, cfg.repeats, run_job, on_progress)
    results = [summarise_job(job, runs[job.key], data["n_images"], gt, models) for job in jobs if job.key in runs]
    attach_ratios(results)
    report = {
        "schema": SCHEMA,
        "started_utc": started.isoformat(timespec="seconds"),
        "config": config_to_dict(cfg),
        "system": collect_system_info(),
        "data": data,
        "models": models,
        "results": results,
        "projection": project(results, cfg),
        "notes": notes + round_notes + standing_notes(cfg),
    }
    if cfg.json_out:
        from zsclip.predict import write_json_atomic

        write_json_atomic(Path(cfg.json_out), report)
    if cfg.chart_out:
        from zsclip_bench.chart import render_chart

        render_chart(report, Path(cfg.chart_out))
    return report


def prepare_data(cfg: BenchConfig, stack: ExitStack) -> Tuple[Path, Dict[str, Any]]:
    """The data dir to measure (a synthetic one is written first) and its description.

    Raises:
        InputDataError: the data dir is unusable.
    """
    data: Dict[str, Any]
    if cfg.data_dir is not None:
        data_dir, data = Path(cfg.data_dir), {"kind": "dir", "path": str(cfg.data_dir)}
    else:
        spec = SyntheticSpec(n=cfg.synthetic, seed=cfg.seed)
        root = Path(cfg.work_dir) if cfg.work_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        data_dir = write_synthetic_set(root / f"synthetic-{spec.n}-seed{spec.seed}", spec)
        data = {"kind": "synthetic", "path": str(data_dir) if cfg.work_dir else None,
                "spec": dataclasses.asdict(spec), "composition": describe_set(spec)}
    datasets = find_datasets(data_dir)
    data["datasets"] = {d.name: {"classes": len(d.classes), "images": len(d.images)} for d in datasets}
    data["n_images"] = sum(len(d.images) for d in datasets)
    if data["n_images"] == 0:
        raise InputDataError(f"no images in {data_dir}")
    data["n_measured"] = min(cfg.limit, data["n_images"]) if cfg.limit else data["n_images"]
    return data_dir, data


def summarise_job(
    job: Job, runs: List[Dict[str, Any]], n_set: int, gt: Optional[Dict], models: List[Dict[str, Any]]
) -> Dict[str, Any]:
    model = next(m for m in models if m["model_dir"] == job.model_dir)
    predictions = runs[0].pop("predictions", None)
    return {
        "model_id": model["model_id"],
        "model_dir": job.model_dir,
        "variant": job.variant,
        "threads": job.threads,
        "median": median_of([derive(run, n_set) for run in runs]),
        "runs": runs,
        "top1": top1_accuracy(predictions, gt) if predictions and gt else None,
    }


def config_to_dict(cfg: BenchConfig) -> Dict[str, Any]:
    data = dataclasses.asdict(cfg)
    return {k: (str(v) if isinstance(v, Path) else [str(x) for x in v] if k == "model_dirs" else v)
            for k, v in data.items()}


def standing_notes(cfg: BenchConfig) -> List[str]:
    """What every reader of the numbers should know."""
    return [
        f"medians over {cfg.repeats} round(s); each round runs every configuration once, in a fresh process, "
        "in rotated order",
        f"the first {cfg.warmup_batches} batch(es) of {cfg.batch_size} run before timing and are excluded",
        "stages run one after another (no decode/inference overlap): exact at 1 thread, an upper bound with more",
        "cold start = import + model load (sessions opened) + class-name embeddings; the interpreter's own "
        "start-up is in runs[].process_wall_s",
        "images are read from the OS page cache after the first round",
        "projection = cold start + per-image time x images, at the fewest threads measured; "
        f"PASS < {cfg.pass_fraction:.0%} of the budget, MARGIN < 100%, else FAIL",
    ]
