"""`zsclip-bundle`: build the contest submission archive. Exit codes: 0 ok, 1 error, 2 usage error."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Optional, Tuple

import click
from zsclip.cli import run_guarded


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True, help="Model dir to ship.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=Path("submission.zip"),
              show_default=True, help="The archive to write.")
@click.option("--python", "python_version", default=None,
              help="Target Python as MAJOR.MINOR (default: this interpreter's).")
@click.option("--platform", "platforms", multiple=True,
              help="Target wheel platform tag, repeatable (default: manylinux2014_x86_64).")
@click.option("--variant", default=None, help="Model variant to ship (default: the manifest's default).")
@click.option("--max-size-mb", type=float, default=700.0, show_default=True, help="Fail above this size.")
@click.option("--find-links", type=click.Path(path_type=Path), multiple=True, help="Extra local wheel folder.")
@click.option("--offline", is_flag=True, help="Use --find-links folders only, never an index.")
@click.option("--constraint", "constraints", multiple=True, help="Extra pip constraint, e.g. 'numpy<2'.")
@click.option("-v", "--verbose", count=True, help="More log output.")
@click.option("--debug", is_flag=True, help="Show tracebacks of user errors.")
@run_guarded
def main(
    model_dir: Path, out_path: Path, python_version: Optional[str], platforms: Tuple[str, ...], variant: Optional[str],
    max_size_mb: float, find_links: Tuple[Path, ...], offline: bool, constraints: Tuple[str, ...], verbose: int,
) -> None:
    """Build a submission archive: setup.sh, predict.sh, the model dir and every wheel it needs."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="zsclip-bundle: %(message)s",
                        stream=sys.stderr)
    from zsclip_bundle.build import BundleConfig, build_bundle

    cfg = BundleConfig(model_dir=model_dir, out_path=out_path, variant=variant, max_size_mb=max_size_mb,
                       find_links=find_links, offline=offline, constraints=constraints)
    if python_version:
        cfg = dataclasses.replace(cfg, python_version=python_version)
    if platforms:
        cfg = dataclasses.replace(cfg, platforms=platforms)
    report = build_bundle(cfg)
    click.echo(report.format_breakdown())
    click.echo(f"wrote {report.out_path} ({report.size / 1024 / 1024:.1f} MB) for Python {cfg.python_version} "
               f"{'/'.join(cfg.platforms)}")


if __name__ == "__main__":
    main()
