"""`zsclip-train`: download -> prepare -> fit, and probe. Exit codes: 0 ok, 1 user error (one stderr line), 2 usage error.

Each command builds one frozen config and calls one library function. Heavy modules (torch, PIL)
are imported inside the commands so `--help` stays instant.

Adding a command is one decorated function: `@main.command()` + `@common_options` + `@run_guarded`.
The offline default model's text-head recipe (zsclip_train.align) runs inside `zsclip-export`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import click
from zsclip.cli import common_options, setup_logging
from zsclip.cli import run_guarded as guarded


def run_guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """zsclip's guard (one `error:` line and exit 1, Ctrl-C exit 130, `--debug` tracebacks) + logging set up
    from the command's -v/-q before it runs."""

    @functools.wraps(func)
    def configured(*args: Any, verbose: int = 0, quiet: bool = False, **kwargs: Any) -> Any:
        setup_logging(verbose, quiet, prog="zsclip-train")
        return func(*args, **kwargs)

    return guarded(configured)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train zsclip two-tower models: download -> prepare -> fit (then zsclip-export)."""


@main.command()
@click.option("--images", "images", type=click.Path(path_type=Path), required=True, help="images.json (JSON lines).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Shard directory.")
@click.option("--concurrency", type=int, default=64, show_default=True, help="Parallel requests.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per socket operation.")
@click.option("--retries", type=int, default=2, show_default=True)
@click.option("--backoff", type=float, default=1.0, show_default=True, help="First retry delay (doubles).")
@click.option("--max-bytes", type=int, default=20 << 20, show_default=True)
@click.option("--min-side", type=int, default=64, show_default=True, help="Smaller images are rejected.")
@click.option("--resize-side", type=int, default=384, show_default=True, help="Shorter side after re-encoding.")
@click.option("--shard-size", type=int, default=1000, show_default=True, help="Images per tar shard.")
@click.option("--part", type=(int, int), default=(0, 1), show_default=True, metavar="K N",
              help="Only lines i with i % N == K (one part per process or machine, same --out).")
@click.option("--retry-failed", is_flag=True, help="Also retry images that failed permanently before.")
@common_options
@run_guarded
def download(images: Path, out_dir: Path, concurrency: int, timeout: float, retries: int, backoff: float,
             max_bytes: int, min_side: int, resize_side: int, shard_size: int, part: Tuple[int, int],
             retry_failed: bool) -> None:
    """Download, validate and re-encode the images of images.json into WebDataset tar shards (resumable)."""
    from zsclip_train.download import DownloadConfig, download_images

    cfg = DownloadConfig(images=images, out_dir=out_dir, concurrency=concurrency, timeout=timeout, retries=retries,
                         backoff=backoff, max_bytes=max_bytes, min_side=min_side, resize_side=resize_side,
                         shard_size=shard_size, part=part[0], parts=part[1], retry_failed=retry_failed)
    click.echo(download_images(cfg).render())


@main.command()
@click.option("--metadata", type=click.Path(path_type=Path), required=True, help="metadata.json (JSON lines).")
@click.option("--shards", "shard_dir", type=click.Path(path_type=Path), required=True, help="Output of download.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Prepared dataset dir.")
@click.option("--stop-words", type=click.Path(path_type=Path), default=None,
              help="File with one uninformative query per line (default: the built-in Russian list).")
@click.option("--min-chars", type=int, default=2, show_default=True)
@click.option("--max-queries", type=int, default=32, show_default=True, help="Per image, after dedupe.")
@click.option("--vocab-size", type=int, default=16000, show_default=True, help="Of the WordPiece tokenizer.")
@common_options
@run_guarded
def prepare(metadata: Path, shard_dir: Path, out_dir: Path, stop_words: Optional[Path], min_chars: int,
            max_queries: int, vocab_size: int) -> None:
    """Clean the queries, keep pairs whose image downloaded, index the shards, write stats."""
    from zsclip_train.queries import PrepareConfig, QueryCleanConfig, prepare_dataset

    clean = QueryCleanConfig.from_file(stop_words) if stop_words else QueryCleanConfig()
    clean = QueryCleanConfig(stop_words=clean.stop_words, min_chars=min_chars, max_queries=max_queries)
    cfg = PrepareConfig(metadata=metadata, shard_dir=shard_dir, out_dir=out_dir, clean=clean, vocab_size=vocab_size)
    click.echo(prepare_dataset(cfg).render())


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@common_options
@run_guarded
def fit(config: Path) -> None:
    """Train the two towers from a JSON or TOML config (run under torchrun for several GPUs or nodes)."""
    from zsclip_train.fit import fit_model, load_train_config

    result = fit_model(load_train_config(config))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary line
        click.echo(str(result))


@main.command("cache-features")
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="Storage of the features (float16: half the disk; float32: bit-faithful to the tower).")
@click.option("--shard-size", type=int, default=10000, show_default=True, help="Images per .npy shard.")
@click.option("--batch-size", type=int, default=None, help="Images per forward pass (default: the config's).")
@common_options
@run_guarded
def cache_features(config: Path, dtype: str, shard_size: int, batch_size: Optional[int]) -> None:
    """Compute the locked image tower's features of every training image into the config's `feature_cache` dir
    (resumable; under torchrun each rank computes its share). `fit` with the same config then trains from it."""
    from zsclip_train.feature_cache_build import FeatureCacheConfig, cache_image_features
    from zsclip_train.fit import load_train_config

    cfg = FeatureCacheConfig(train=load_train_config(config), dtype=dtype, shard_size=shard_size, batch_size=batch_size)
    result = cache_image_features(cfg, progress=lambda line: click.echo(line, err=True))
    if os.environ.get("RANK", "0") == "0":
        click.echo(str(result))


@main.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="Labelled photos: a data dir (datasets/<name>/classes.json + img/) with gt.json.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Source zero-shot model dir (default: $ZSCLIP_MODEL_DIR or the default model).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Probe model dir to write.")
@click.option("--labels", "labels_path", type=click.Path(path_type=Path), default=None,
              help="gt.json with {dataset: {image_stem: class_index}} (default: DATA/gt.json).")
@click.option("--dataset", default=None, help="Which dataset, when DATA holds several.")
@click.option("--embeddings", type=click.Path(path_type=Path), default=None,
              help="A zsclip-embed file of the same photos and model (skips encoding).")
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime threads.")
@click.option("--force", is_flag=True, help="Replace an existing --out dir.")
@common_options
@run_guarded
def probe(data_dir: Path, model_dir: Optional[Path], out_dir: Path, labels_path: Optional[Path], dataset: Optional[str],
          embeddings: Optional[Path], threads: int, force: bool) -> None:
    """Fit a linear probe on frozen embeddings; write a fixed-class model dir zsclip-predict uses as is."""
    from zsclip.paths import default_model_dir

    from zsclip_train.probe import ProbeConfig, train_probe

    cfg = ProbeConfig(data_dir=data_dir, model_dir=model_dir or default_model_dir(), out_dir=out_dir,
                      labels_path=labels_path, dataset=dataset, embeddings=embeddings, threads=threads, force=force)
    out, head = train_probe(cfg)
    click.echo(f"probe model dir: {out} (l2 {head.l2:g}, cross-validated accuracy {head.cv_accuracy[head.l2]:.4f})")


if __name__ == "__main__":  # `python -m zsclip_train.cli` (what torchrun -m runs)
    main()
