"""`zsclip-predict` and `zsclip-eval`. Exit codes: 0 ok, 1 user error (one stderr line), 2 usage error."""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import click

from zsclip.errors import ConfigError, InputDataError, ZsclipError
from zsclip.progress import progress_callbacks


class OwnerFormatter(logging.Formatter):
    """`prog: LEVEL: message` for zsclip's own loggers; a library's record under its own name
    (`onnxruntime: WARNING: ...`; `library` when it logged through the root logger), never as zsclip's."""

    def __init__(self, prog: str) -> None:
        super().__init__("%(message)s")
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        owner = self.prog if is_own_logger(record.name) else ("library" if record.name == "root" else record.name)
        return f"{owner}: {record.levelname}: {super().format(record)}"


def is_own_logger(name: str) -> bool:
    return name.split(".")[0] in ("zsclip", "zsclip_export", "zsclip_train", "zsclip_bench", "zsclip_bundle", "__main__")


def setup_logging(verbose: int, quiet: bool, prog: str = "zsclip") -> None:
    """Log to stderr at WARNING (-v INFO, -vv DEBUG, -q ERROR). Third-party libraries' warnings are shown,
    under their own name, only with -v; their errors always."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OwnerFormatter(prog))
    if not verbose:
        handler.addFilter(lambda record: is_own_logger(record.name) or record.levelno >= logging.ERROR)
    logging.basicConfig(level=level, handlers=[handler])


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C, also when an extension module's import turned it into an ImportError (onnxruntime does)."""
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 10:
        if isinstance(current, KeyboardInterrupt):
            return True
        current, seen = current.__cause__ or current.__context__, seen + 1
    return False


def exit_interrupted() -> None:
    """One stderr line and exit 130; the atomic writers leave no partial output behind."""
    click.echo("interrupted", err=True)
    sys.exit(EXIT_INTERRUPTED)


def run_guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ZsclipError into one stderr line and exit code 1 (`--debug` shows the traceback), except a ConfigError
    about a field one of the command's options filled: that is click's usage error naming the `--option`, exit 2.
    Ctrl-C exits 130 (with `--debug`, after its traceback: click would otherwise print "Aborted!" and exit 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.pop("debug", False)
        try:
            return func(*args, **kwargs)
        except ZsclipError as exc:
            if debug:
                raise
            option = option_of_field(exc, getattr(func, "field_options", {}))
            if option is not None:  # a bad option value is a usage error: click names the --flag, exit 2
                raise click.BadParameter(getattr(exc, "problem", str(exc)), ctx=click.get_current_context(),
                                         param=option) from None
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except (KeyboardInterrupt, Exception) as exc:  # Ctrl-C, also when a library wrapped it (ImportError)
            if not is_interrupt(exc):
                raise
            if debug:
                traceback.print_exc()
            exit_interrupted()

    return wrapper


def field_options(**aliases: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Name the options that fill config fields of another name: `@field_options(calibration_images="calib_images")`
    (under `@run_guarded`). Fields named like their option's parameter (`batch_size` <- `--batch-size`) need none."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        func.field_options = aliases  # type: ignore[attr-defined]
        return func

    return mark


def option_of_field(exc: ZsclipError, aliases: Dict[str, str]) -> Optional[click.Option]:
    """The running command's option that filled the config field a `ConfigError` names, if any."""
    field = getattr(exc, "field", None) if isinstance(exc, ConfigError) else None
    ctx = click.get_current_context(silent=True)
    if field is None or ctx is None:
        return None
    name = aliases.get(field, field)
    return next((p for p in ctx.command.params if isinstance(p, click.Option) and p.name == name), None)


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")(func)
    func = click.option("-q", "--quiet", is_flag=True, help="Errors only.")(func)
    func = click.option("--debug", is_flag=True, help="Show tracebacks of user errors.")(func)
    return func


def runtime_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of every command that runs a model: --model, --variant, --threads, --batch-size,
    --decode-workers (shown in that order)."""
    func = click.option("--decode-workers", type=int, default=0, show_default=True,
                        help="Image-decoding threads (0: one per usable CPU).")(func)
    func = click.option("--batch-size", type=int, default=32, show_default=True)(func)
    func = click.option("--threads", type=int, default=0, show_default=True, help="onnxruntime threads (0: all cores).")(func)
    func = click.option("--variant", default=None, help="Model variant: fp32 or int8 (default: the manifest's).")(func)
    func = click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
                        help="Model dir (default: $ZSCLIP_MODEL_DIR or ~/.local/share/zsclip/models/ru-effnet-lite2-navec).")(func)
    return func


def exact_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--exact", is_flag=True,
                        help="Preprocess exactly as the model's upstream processor: no JPEG draft decode, no "
                             "two-step resize (slower on big photos; see export/README-hf.md for the bound).")(func)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.argument("out_json", type=click.Path(path_type=Path))
@runtime_options
@exact_option
@click.option("--strict", is_flag=True, help="Fail on an undecodable image instead of guessing.")
@click.option("--prior-correction", type=float, default=None,
              help="Strength 0..1 of the per-dataset prior correction, which assumes balanced classes "
                   "(default: the model's; try 0 for strongly unbalanced data).")
@click.option("--support", "support_dir", type=click.Path(path_type=Path), default=None,
              help="Few-shot photos: SUPPORT/<dataset>/<class_index>/*.jpg (any subset of classes).")
@click.option("--spread/--no-spread", default=True, show_default=True,
              help="Transductive label spreading: similar-looking images of a dataset vote together.")
@common_options
@run_guarded
def predict_main(
    data_dir: Path, out_json: Path, model_dir: Optional[Path], variant: Optional[str], threads: int,
    batch_size: int, strict: bool, prior_correction: Optional[float], verbose: int, quiet: bool,
    support_dir: Optional[Path] = None, decode_workers: int = 0, spread: bool = True, exact: bool = False,
) -> None:
    """Predict a class for every image of every dataset in DATA_DIR; write OUT_JSON.

    DATA_DIR holds datasets, each a folder with classes.json (Russian class names) and img/.
    OUT_JSON is {dataset: {image_stem: class_index}}. With --support, classes that have support photos
    are scored by zero-shot blended with those photos (weight chosen by leave-one-out on them).
    """
    setup_logging(verbose, quiet)
    from zsclip.paths import default_model_dir
    from zsclip.predict import PredictConfig, predict_dir

    cfg = PredictConfig(
        data_dir=data_dir, out_path=out_json, model_dir=model_dir or default_model_dir(), variant=variant,
        threads=threads, batch_size=batch_size, strict=strict, prior_correction=prior_correction,
        support_dir=support_dir, decode_workers=decode_workers, spread=spread, exact=exact,
    )
    on_start, on_progress, close = progress_callbacks("predicting", enabled=not quiet)
    try:
        report = predict_dir(cfg, on_progress=on_progress, on_start=on_start)
    finally:
        close()
    if report.failed:
        click.echo(f"warning: {len(report.failed)} undecodable image(s) got a fallback class "
                   f"(first: {report.failed[0][0]})", err=True)
    if not quiet:
        total = report.timings.get("total", 0.0)
        click.echo(f"{report.n_images} images in {len(report.predictions)} dataset(s), {total:.1f} s "
                   f"-> {out_json}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("gt_json", type=click.Path(path_type=Path))
@click.argument("out_json", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="The data dir, for class names and counts (default: next to GT_JSON under datasets/).")
@click.option("--per-class", is_flag=True, help="Print accuracy for every class (instead of the worst ones).")
@click.option("--worst", type=click.IntRange(min=0), default=10, show_default=True, help="Print the N worst classes.")
@click.option("--confusion", type=click.Path(path_type=Path), default=None,
              help="Write a confusion-matrix PNG per dataset (PATH, or PATH with the dataset name inserted).")
@click.option("--no-strict", is_flag=True, help="Score even when images or datasets are missing.")
@common_options
@run_guarded
def eval_main(
    gt_json: Path, out_json: Path, data_dir: Optional[Path], per_class: bool, worst: int,
    confusion: Optional[Path], no_strict: bool, verbose: int, quiet: bool,
) -> None:
    """Score OUT_JSON against GT_JSON: per-dataset and mean accuracy (the contest's numbers).

    With -q only the mean accuracy line is printed (the confusion PNGs are still written).
    """
    setup_logging(verbose, quiet)
    say = (lambda _text: None) if quiet else click.echo
    from zsclip.datadir import find_datasets
    from zsclip.evaluate import check_ground_truth_matches, check_not_swapped, evaluate, read_labels, render_confusion_png, worst_classes

    gt = read_labels(gt_json, "ground truth")
    pred = read_labels(out_json, "predictions")
    if data_dir is not None and not data_dir.is_dir():
        raise InputDataError(f"--data {data_dir} does not exist or is not a directory")
    check_not_swapped(gt_json, out_json, data_given=data_dir is not None)
    data_dir = data_dir or (gt_json.parent / "datasets")
    names = {}
    if data_dir.is_dir():
        datasets = find_datasets(data_dir)
        check_ground_truth_matches(gt, datasets, gt_json, data_dir, strict=not no_strict)
        names = {d.name: d.classes for d in datasets}
    elif not quiet:
        click.echo(f"warning: no {data_dir} beside the ground truth: classes are shown as indices "
                   f"(--data DATA_DIR gives their names)", err=True)
    report = evaluate(gt, pred, strict=not no_strict, n_classes={k: len(v) for k, v in names.items()})
    for score in report.datasets:
        classes = names.get(score.name)
        say(f"{score.name}: accuracy {score.accuracy:.4f} ({score.n_images} images)")
        rows = sorted(score.per_class) if per_class else [c for c, _, _ in worst_classes(score, worst)]
        if rows:
            say("  per class:" if per_class else f"  {len(rows)} worst classes:")
        for c in rows:
            ok, n = score.per_class[c]
            label = classes[c] if classes else str(c)
            say(f"    {c:4d} {label:<32} {ok / n:.3f} ({ok}/{n})")
        if confusion:
            target = confusion if len(report.datasets) == 1 else confusion.with_name(
                f"{confusion.stem}_{score.name}{confusion.suffix or '.png'}")
            render_confusion_png(score, target, classes)
            say(f"  confusion matrix -> {target}")
    click.echo(f"mean accuracy: {report.mean_accuracy:.4f}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="The .npz file to write.")
@runtime_options
@exact_option
@click.option("--strict", is_flag=True, help="Fail on an undecodable image instead of recording it.")
@common_options
@run_guarded
def embed_main(
    data_dir: Path, out_path: Path, model_dir: Optional[Path], variant: Optional[str], threads: int,
    batch_size: int, strict: bool, verbose: int, quiet: bool, decode_workers: int = 0, exact: bool = False,
) -> None:
    """Save L2-normalised image embeddings (with file stems and dataset names) and class-name embeddings.

    DATA_DIR is laid out as for zsclip-predict. A killed run resumes from OUT.partial/ when re-run.
    """
    setup_logging(verbose, quiet)
    from zsclip.embed import EmbedConfig, embed_dir
    from zsclip.paths import default_model_dir

    cfg = EmbedConfig(data_dir=data_dir, out_path=out_path, model_dir=model_dir or default_model_dir(),
                      variant=variant, threads=threads, batch_size=batch_size, strict=strict,
                      decode_workers=decode_workers, exact=exact)
    on_start, on_progress, close = progress_callbacks("embedding", enabled=not quiet)
    try:
        emb = embed_dir(cfg, on_progress=on_progress, on_start=on_start)
    finally:
        close()
    if len(emb.failed_filename):
        click.echo(f"warning: {len(emb.failed_filename)} undecodable image(s) recorded as failed "
                   f"(first: {emb.failed_filename[0]})", err=True)
    if not quiet:
        click.echo(f"{len(emb.filename)} image embeddings, {len(emb.class_name)} class embeddings -> {out_path}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("img_dir", type=click.Path(path_type=Path))
@click.option("--classes", "classes_path", type=click.Path(path_type=Path), required=True,
              help="classes.json: a JSON list of class names.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="labels.csv to write.")
@click.option("--review", "review_dir", type=click.Path(path_type=Path), default=None,
              help="Also write an offline review page (index.html) into this folder.")
@runtime_options
@click.option("--strict", is_flag=True, help="Fail on an undecodable image instead of flagging it.")
@common_options
@run_guarded
def label_main(
    img_dir: Path, classes_path: Path, out_path: Path, review_dir: Optional[Path], model_dir: Optional[Path],
    variant: Optional[str], threads: int, batch_size: int, strict: bool, verbose: int, quiet: bool,
    decode_workers: int = 0,
) -> None:
    """Pseudo-label every image in IMG_DIR: label and confidence per image in a CSV.

    Images where zero-shot, kNN over confident neighbours and k-means disagree are flagged "problem"
    (problem=1). --review DIR writes a static page to confirm or fix labels by keyboard and export the
    corrections as CSV.
    """
    setup_logging(verbose, quiet)
    from zsclip.label import LabelConfig, label_images
    from zsclip.paths import default_model_dir

    cfg = LabelConfig(img_dir=img_dir, classes_path=classes_path, out_path=out_path, review_dir=review_dir,
                      model_dir=model_dir or default_model_dir(), variant=variant, threads=threads,
                      batch_size=batch_size, strict=strict, decode_workers=decode_workers)
    on_start, on_progress, close = progress_callbacks("labelling", enabled=not quiet)
    try:
        rows, _ = label_images(cfg, on_progress=on_progress, on_start=on_start)
    finally:
        close()
    failed = [r for r in rows if r.reason.startswith("undecodable")]
    if failed:
        click.echo(f"warning: {len(failed)} undecodable image(s) flagged as problems (first: {failed[0].path})", err=True)
    if not quiet:
        problems = sum(r.problem for r in rows)
        where = f"; review: {review_dir / 'index.html'}" if review_dir else ""
        click.echo(f"{len(rows)} images, {problems} problem(s) -> {out_path}{where}", err=True)
