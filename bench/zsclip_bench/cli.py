"""`zsclip-bench`. Exit codes: 0 ok, 1 user error (one stderr line), 2 usage error."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import click
from zsclip.cli import common_options, run_guarded, setup_logging
from zsclip.errors import ConfigError
from zsclip.progress import Heartbeat, format_duration, stderr_is_terminal
from zsclip.workers import available_cpus

from zsclip_bench.config import CONTEST_BUDGET_S, CONTEST_IMAGES


def parse_threads(text: str) -> Tuple[int, ...]:
    """"1,2" or "1,all" -> (1, 2); "all" is every usable CPU. Duplicates are dropped.

    Raises:
        ConfigError: not a comma-separated list of positive integers or "all".
    """
    counts = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            count = available_cpus() if part == "all" else int(part)
        except ValueError:
            raise ConfigError.for_field("threads", f"{text!r}: give counts like 1,2 or 1,all") from None
        if count < 1:
            raise ConfigError.for_field("threads", f"{text!r}: counts must be >= 1")
        if count not in counts:
            counts.append(count)
    return tuple(counts)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Model dir (repeatable; default: $ZSCLIP_MODEL_DIR or the installed default model).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="A contest-style data dir (DATA/<dataset>/{classes.json,img/}) instead of the synthetic set.")
@click.option("--synthetic", type=int, default=None, help=f"Synthetic set size [default: {CONTEST_IMAGES}].")
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic set seed.")
@click.option("--gt", "gt_path", type=click.Path(path_type=Path), default=None,
              help="gt.json for top-1 (default: DATA/../gt.json when DATA is named datasets).")
@click.option("--variant", "variants", multiple=True, help="Manifest variant to measure (repeatable; default: all).")
@click.option("--threads", default="1,all", show_default=True, help="Thread counts to compare.")
@click.option("--baseline", type=click.Choice(["torch"]), default=None, help="Also run the PyTorch eager FP32 tower.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Rounds; numbers are medians.")
@click.option("--warmup-batches", type=int, default=2, show_default=True, help="Untimed batches before timing.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--limit", type=int, default=0, show_default=True, help="Time an evenly spaced subset (0: all images).")
@click.option("--budget-s", type=float, default=CONTEST_BUDGET_S, show_default=True, help="Time budget.")
@click.option("--budget-images", type=int, default=CONTEST_IMAGES, show_default=True, help="Images in the budget.")
@click.option("--pass-fraction", type=float, default=0.5, show_default=True,
              help="PASS below this fraction of the budget, MARGIN below the budget, else FAIL.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the full report here.")
@click.option("--chart", "chart_out", type=click.Path(path_type=Path), default=None, help="Write a PNG bar chart here.")
@click.option("--work-dir", type=click.Path(path_type=Path), default=None,
              help="Keep the synthetic set here (default: a temporary folder).")
@common_options
@run_guarded
def main(
    model_dirs: Tuple[Path, ...], data_dir: Optional[Path], synthetic: Optional[int], seed: int,
    gt_path: Optional[Path], variants: Tuple[str, ...], threads: str, baseline: Optional[str], repeats: int,
    warmup_batches: int, batch_size: int, limit: int, budget_s: float, budget_images: int, pass_fraction: float,
    json_out: Optional[Path], chart_out: Optional[Path], work_dir: Optional[Path], verbose: int, quiet: bool,
) -> None:
    """Time zsclip models end to end (decode -> preprocess -> image tower -> scoring -> JSON).

    Every variant of every --model (and the PyTorch baseline) at every thread count, interleaved
    in one run; a markdown table on stdout, the full report with --json.
    """
    setup_logging(verbose, quiet)
    from zsclip.paths import default_model_dir

    from zsclip_bench.config import BenchConfig
    from zsclip_bench.report import format_report
    from zsclip_bench.runner import run_bench

    if data_dir is not None and synthetic is not None:
        raise click.UsageError("give --data DIR or --synthetic N, not both")
    cfg = BenchConfig(
        model_dirs=model_dirs or (default_model_dir(),), data_dir=data_dir, synthetic=CONTEST_IMAGES if synthetic is None else synthetic,
        seed=seed, gt_path=gt_path, variants=variants, threads=parse_threads(threads), baseline=baseline,
        repeats=repeats, warmup_batches=warmup_batches, batch_size=batch_size, limit=limit, budget_s=budget_s,
        budget_images=budget_images, pass_fraction=pass_fraction, json_out=json_out, chart_out=chart_out,
        work_dir=work_dir,
    )

    started, runs = time.monotonic(), {"done": 0, "total": 0}

    def on_progress(done: int, total: int, job: object) -> None:
        runs.update(done=done, total=total)
        if not quiet:  # one line per measured run (a fresh process each), terminal or log file alike
            click.echo(f"[{done}/{total}] {getattr(job, 'variant', '')} t{getattr(job, 'threads', '')} "
                       f"{getattr(job, 'model_dir', '')}: {100 * done // total}%, {timing()}", err=True)

    def timing() -> str:
        elapsed, done, total = time.monotonic() - started, runs["done"], runs["total"]
        if not done:
            return f"{format_duration(elapsed)} so far"
        return f"ETA {format_duration(elapsed / done * (total - done))}" if done < total else format_duration(elapsed)

    def heartbeat() -> str:
        done = f"{runs['done']}/{runs['total']} runs" if runs["total"] else "first run"
        return f"benchmarking: {done}, {timing()}"

    with Heartbeat(heartbeat, enabled=not quiet and not stderr_is_terminal()):  # runs take 10-60 s each
        report = run_bench(cfg, on_progress=on_progress)
    click.echo(format_report(report))
    if json_out and not quiet:
        click.echo(f"report -> {json_out}", err=True)
    sys.stdout.flush()
