"""The bench report as a markdown table (stdout) and the shape its JSON must have."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from zsclip_bench.stages import STAGES

REPORT_KEYS = ("schema", "started_utc", "config", "system", "data", "models", "results", "projection", "notes")
SYSTEM_KEYS = ("python", "platform", "packages", "cpu")
MODEL_KEYS = ("model_dir", "model_id", "manifest_sha256", "files", "variants")
RESULT_KEYS = ("model_id", "model_dir", "variant", "threads", "median", "runs", "top1", "vs_torch")
MEDIAN_KEYS = (
    "cold_start_s", "per_image_ms", "images_per_s", "set_wall_s", "peak_rss_mb", "other_ms_per_image",
    *(f"{stage}_ms_per_image" for stage in STAGES),
)
PROJECTION_KEYS = ("model_id", "variant", "threads", "images", "projected_s", "budget_s", "budget_fraction", "verdict")


def check_report(report: Mapping[str, Any]) -> List[str]:
    """Problems with the report's shape (empty when it is well formed)."""
    problems = [f"missing top-level key {k!r}" for k in REPORT_KEYS if k not in report]
    if problems:
        return problems
    problems += [f"system: missing {k!r}" for k in SYSTEM_KEYS if k not in report["system"]]
    for index, model in enumerate(report["models"]):
        problems += [f"models[{index}]: missing {k!r}" for k in MODEL_KEYS if k not in model]
    for index, result in enumerate(report["results"]):
        problems += [f"results[{index}]: missing {k!r}" for k in RESULT_KEYS if k not in result]
        median = result.get("median", {})
        problems += [f"results[{index}].median: missing {k!r}" for k in MEDIAN_KEYS if k not in median]
        if not result.get("runs"):
            problems.append(f"results[{index}]: no runs")
    for index, row in enumerate(report["projection"]):
        problems += [f"projection[{index}]: missing {k!r}" for k in PROJECTION_KEYS if k not in row]
    return problems


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_results(report: Mapping[str, Any]) -> str:
    header = ["model", "variant", "threads", "cold start s", *(f"{s} ms" for s in STAGES), "other ms",
              "ms/image", "images/s", "set wall s", "peak RSS MB", "vs torch", "top-1"]
    rows = []
    for r in report["results"]:
        m = r["median"]
        ratio = r["vs_torch"]
        rows.append([
            r["model_id"], r["variant"], str(r["threads"]), f"{m['cold_start_s']:.2f}",
            *(f"{m[f'{s}_ms_per_image']:.2f}" for s in STAGES), f"{m['other_ms_per_image']:.2f}",
            f"{m['per_image_ms']:.2f}", f"{m['images_per_s']:.1f}", f"{m['set_wall_s']:.1f}",
            f"{m['peak_rss_mb']:.0f}", f"{ratio['per_image_speedup']:.2f}x" if ratio else "—",
            f"{r['top1']:.4f}" if r["top1"] is not None else "—",
        ])
    return markdown_table(header, rows)


def format_projection(report: Mapping[str, Any]) -> str:
    header = ["model", "variant", "threads", "projected s", "of budget", "verdict"]
    rows = [[p["model_id"], p["variant"], str(p["threads"]), f"{p['projected_s']:.1f}",
             f"{p['budget_fraction']:.1%}", f"**{p['verdict']}**"] for p in report["projection"]]
    return markdown_table(header, rows)


def format_system(system: Mapping[str, Any]) -> str:
    cpu = system["cpu"]
    flags = ", ".join(k for k, v in cpu["flags"].items() if v) or "none of the tracked ones"
    packages = ", ".join(f"{k} {v}" for k, v in system["packages"].items() if v)
    return (f"CPU: {cpu['model']} ({cpu.get('usable_cpus')} usable of {cpu.get('logical_cpus')} logical); "
            f"flags: {flags}\nPython {system['python']}; {packages}")


def format_report(report: Mapping[str, Any]) -> str:
    """The whole report as markdown."""
    cfg, data = report["config"], report["data"]
    source = data["path"] or f"synthetic ({data['n_images']} images, seed {cfg['seed']})"
    lines = [
        "## zsclip-bench",
        "",
        f"Data: {source}; measured {data['n_measured']} of {data['n_images']} images, "
        f"batch {cfg['batch_size']}, medians of {cfg['repeats']} round(s). Stage columns are ms per image.",
        "",
        format_results(report),
        "",
        f"### Projection: {cfg['budget_images']} images against {cfg['budget_s']:.0f} s",
        "",
        format_projection(report),
        "",
        format_system(report["system"]),
        "",
        *(f"- {note}" for note in report["notes"]),
    ]
    return "\n".join(lines)


def summarise_ratios(report: Mapping[str, Any]) -> Dict[str, float]:
    """{"model/variant@threads": speedup over torch} for the results that have a baseline."""
    return {f"{r['model_id']}/{r['variant']}@{r['threads']}": r["vs_torch"]["per_image_speedup"]
            for r in report["results"] if r["vs_torch"]}
