"""The whole run: JSON schema, markdown, chart, top-1 and the torch-baseline hook. Not the speed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from zsclip.manifest import load_manifest, write_manifest
from zsclip_bench.config import BenchConfig
from zsclip_bench.job import Job
from zsclip_bench.report import check_report, format_report
from zsclip_bench.runner import run_bench
from zsclip_bench.stages import run_job
from zsclip_bench.worker import run_job_in_subprocess


def in_process(job: Job) -> dict:
    return run_job(job)


def test_report_schema_markdown_chart(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = BenchConfig(model_dirs=(tiny_model_dir,), synthetic=12, threads=(1, 2), repeats=2, batch_size=4,
                      warmup_batches=1, json_out=tmp_path / "bench.json", chart_out=tmp_path / "bench.png",
                      work_dir=tmp_path / "work")
    report = run_bench(cfg, run_job=in_process)
    assert check_report(report) == []
    written = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert check_report(written) == []
    assert {(r["variant"], r["threads"]) for r in written["results"]} == {
        ("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)}
    assert all(len(r["runs"]) == 2 for r in written["results"])
    assert [p["variant"] for p in written["projection"]] == ["fp32", "int8"]
    assert written["models"][0]["manifest_sha256"] and written["models"][0]["files"]
    assert written["data"]["kind"] == "synthetic" and written["data"]["n_images"] == 12
    assert "cpu" in written["system"] and "flags" in written["system"]["cpu"]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = format_report(report)
    assert "| model | variant | threads |" in text and "PASS" in text


def test_top1_from_gt(tiny_model_dir: Path, data_dir: tuple, tmp_path: Path) -> None:
    root, gt = data_dir
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt), encoding="utf-8")
    cfg = BenchConfig(model_dirs=(tiny_model_dir,), data_dir=root, gt_path=gt_path, variants=("int8",),
                      threads=(1,), repeats=1)
    report = run_bench(cfg, run_job=in_process)
    assert report["results"][0]["top1"] == pytest.approx(1.0)


def test_subprocess_worker(tiny_model_dir: Path, data_dir: tuple) -> None:
    result = run_job_in_subprocess(Job(str(tiny_model_dir), "fp32", 1, str(data_dir[0]), warmup_batches=0))
    assert set(result["cold"]) == {"import", "load", "text"}
    assert result["process_wall_s"] >= sum(result["cold"].values()) + result["total_s"]
    assert 10 < result["peak_rss_mb"] < 2000


def test_subprocess_worker_reraises_typed_errors(tiny_model_dir: Path, data_dir: tuple) -> None:
    from zsclip.errors import ModelDirError

    with pytest.raises(ModelDirError, match="variant 'int4'"):
        run_job_in_subprocess(Job(str(tiny_model_dir), "int4", 1, str(data_dir[0])))


def build_reference(manifest):  # noqa: ANN001, ANN201 - the torch_reference hook under test
    import torch

    class MeanRGB(torch.nn.Module):  # the tiny image tower, in torch
        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return pixels.mean(dim=(2, 3)) + 1.0

    return MeanRGB()


def test_torch_baseline_hook(tiny_model_dir: Path, data_dir: tuple, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    model_dir = tmp_path / "with_torch"
    model_dir.mkdir()
    for path in tiny_model_dir.iterdir():
        (model_dir / path.name).write_bytes(path.read_bytes())
    manifest = load_manifest(model_dir)
    write_manifest(model_dir, dataclasses.replace(
        manifest, provenance={**manifest.provenance, "torch_reference": f"{__name__}:build_reference"}))
    root, gt = data_dir
    job = Job(str(model_dir), "torch", 1, str(root), return_predictions=True)
    assert run_job(job)["predictions"] == gt
    cfg = BenchConfig(model_dirs=(model_dir,), data_dir=root, variants=("fp32",), threads=(1,), repeats=1,
                      baseline="torch")
    report = run_bench(cfg, run_job=in_process)
    by_variant = {r["variant"]: r for r in report["results"]}
    assert set(by_variant) == {"fp32", "torch"}
    assert np.isfinite(by_variant["fp32"]["vs_torch"]["per_image_speedup"])


def test_torch_baseline_skipped_with_note(tiny_model_dir: Path, data_dir: tuple) -> None:
    cfg = BenchConfig(model_dirs=(tiny_model_dir,), data_dir=data_dir[0], variants=("fp32",), threads=(1,),
                      repeats=1, baseline="torch")
    report = run_bench(cfg, run_job=in_process)
    assert [r["variant"] for r in report["results"]] == ["fp32"]
    assert any("torch baseline skipped" in note for note in report["notes"])


def test_shared_image_tower_is_noted() -> None:
    from zsclip_bench.runner import shared_image_files

    notes = shared_image_files("m", {"fp32": "image.onnx", "int8": "image.onnx", "int4": "image.int4.onnx"})
    assert len(notes) == 1 and "fp32, int8" in notes[0]
