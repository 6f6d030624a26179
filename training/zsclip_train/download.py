"""`zsclip-train download`: images.json URLs -> validated, resized JPEGs in WebDataset tar shards.

Threads fetch (urllib, stdlib only) and re-encode; the calling thread is the only shard writer. At
most `2 * concurrency` requests are in flight, each capped at `max_bytes`, so memory is bounded
whatever the catalogue size. A re-run skips every id already in a shard or permanently failed
(`failures-*.jsonl`); transient failures (timeouts, 5xx, 429) are retried on the next run.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import random
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Set, Tuple

from PIL import Image, UnidentifiedImageError
from zsclip.errors import ConfigError, InputDataError

from zsclip_train.shards import ShardWriter, iter_samples, list_shards, salvage_partial_shards, sample_key

logger = logging.getLogger(__name__)

RETRY_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
OUTCOMES = ("ok", "http_error", "network_error", "too_large", "not_image", "too_small")
USER_AGENT = "zsclip-train/0.1 (+dataset download; contact: see README)"


@dataclass(frozen=True)
class DownloadConfig:
    """Where to read URLs and write shards, and how hard to try."""

    images: Path
    out_dir: Path
    concurrency: int = 64
    timeout: float = 10.0  # per socket operation; the whole body must arrive within 3x this
    retries: int = 2
    backoff: float = 1.0  # seconds, doubled per retry, with jitter
    max_bytes: int = 20 << 20
    min_side: int = 64
    resize_side: int = 384  # shorter side after re-encoding (never upscaled)
    jpeg_quality: int = 90
    shard_size: int = 1000
    part: int = 0  # run part PART of PARTS (lines i with i % parts == part), e.g. one per machine
    parts: int = 1
    retry_failed: bool = False

    def __post_init__(self) -> None:
        for name, low in (("concurrency", 1), ("shard_size", 1), ("retries", 0), ("max_bytes", 1024), ("min_side", 8)):
            if getattr(self, name) < low:
                raise ConfigError.for_field(name, f"must be >= {low}, got {getattr(self, name)}")
        if self.timeout <= 0:
            raise ConfigError.for_field("timeout", f"must be > 0, got {self.timeout}")
        if self.backoff < 0:
            raise ConfigError.for_field("backoff", f"must be >= 0, got {self.backoff}")
        if self.resize_side < self.min_side:
            raise ConfigError.for_field("resize_side", f"must be >= the minimum side ({self.min_side}), got {self.resize_side}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ConfigError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        if not 0 <= self.part < self.parts:
            raise ConfigError.for_field("part", f"K must be in 0..N-1 ({self.parts - 1}), got {self.part} {self.parts}")


@dataclass(frozen=True)
class DownloadSummary:
    """Outcome counts of one run; `skipped` were done by an earlier run."""

    counts: Tuple[Tuple[str, int], ...]
    skipped: int
    bad_records: int
    seconds: float

    def count(self, outcome: str) -> int:
        return dict(self.counts).get(outcome, 0)

    def render(self) -> str:
        done = sum(n for _, n in self.counts)
        rate = done / self.seconds if self.seconds > 0 else 0.0
        parts = [f"{name.replace('_', ' ')}: {self.count(name)}" for name in OUTCOMES]
        return (f"{done} processed in {self.seconds:.1f} s ({rate:.1f}/s); " + ", ".join(parts)
                + f"; skipped (done before): {self.skipped}; bad records: {self.bad_records}")


class FetchError(Exception):
    """One image failed; `outcome` is one of OUTCOMES."""

    def __init__(self, outcome: str, detail: str, transient: bool = False) -> None:
        super().__init__(detail)
        self.outcome, self.detail, self.transient = outcome, detail, transient


def fetch(url: str, cfg: DownloadConfig) -> bytes:
    """The body of `url`, retrying transient failures with exponential backoff.

    Raises:
        FetchError: http_error, network_error or too_large.
    """
    for attempt in range(cfg.retries + 1):
        last = attempt == cfg.retries
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=cfg.timeout) as response:
                return read_limited(response, cfg)
        except urllib.error.HTTPError as exc:
            transient = exc.code in RETRY_HTTP_CODES
            if not transient or last:
                raise FetchError("http_error", f"HTTP {exc.code}", transient) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException,
                ValueError) as exc:
            if isinstance(exc, ValueError) or last:  # ValueError: malformed URL, retrying cannot help
                raise FetchError("network_error", f"{type(exc).__name__}: {exc}", not isinstance(exc, ValueError)) from None
        time.sleep(cfg.backoff * (2 ** attempt) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def read_limited(response: http.client.HTTPResponse, cfg: DownloadConfig) -> bytes:
    length = response.headers.get("Content-Length") if response.headers else None
    if length and length.isdigit() and int(length) > cfg.max_bytes:
        raise FetchError("too_large", f"Content-Length {length} > {cfg.max_bytes}")
    deadline = time.monotonic() + 3 * cfg.timeout
    chunks: List[bytes] = []
    size = 0
    while True:
        chunk = response.read(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > cfg.max_bytes:
            raise FetchError("too_large", f"body > {cfg.max_bytes} bytes")
        if time.monotonic() > deadline:
            raise FetchError("network_error", f"body not received within {3 * cfg.timeout:.0f} s", transient=True)


def reencode(data: bytes, cfg: DownloadConfig) -> Tuple[bytes, int, int]:
    """Decode fully, check the size, shrink the shorter side to `resize_side`, encode as JPEG.

    Raises:
        FetchError: not_image (undecodable, truncated) or too_small.
    """
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        width, height = image.size
        if min(width, height) < cfg.min_side:
            raise FetchError("too_small", f"{width}x{height} < {cfg.min_side}")
        scale = min(1.0, cfg.resize_side / min(width, height))
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        image.draft("RGB", target)  # JPEG: decode at a reduced scale, much faster for big photos
        image.load()
        image = image.convert("RGB")
        if image.size != target:
            image = image.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FetchError("not_image", f"{type(exc).__name__}: {exc}") from None
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=cfg.jpeg_quality)
    return out.getvalue(), width, height


def fetch_one(image_id: str, url: str, cfg: DownloadConfig) -> Tuple[str, str, bytes, dict]:
    """(image_id, url, jpeg, meta) for a good image. Raises: FetchError."""
    jpeg, width, height = reencode(fetch(url, cfg), cfg)
    return image_id, url, jpeg, {"image": image_id, "url": url, "original_width": width, "original_height": height}


def iter_records(path: Path, cfg: DownloadConfig, bad: Counter) -> Iterator[Tuple[str, str]]:
    """(image id, url) of this part's lines of images.json; malformed lines are counted and warned about.

    Raises:
        InputDataError: unreadable file, or not one line of it is a record (not a JSON-lines catalogue).
    """
    try:
        handle = open(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"cannot read {path}: {exc}") from None
    good = 0
    with handle:
        for number, line in enumerate(handle):
            if number % cfg.parts != cfg.part or not line.strip():
                continue
            try:
                record = json.loads(line)
                image_id, url = str(record["image"]), str(record["url"])
            except (json.JSONDecodeError, KeyError, TypeError):
                bad["bad_record"] += 1
                logger.warning("%s:%d: not a {\"image\", \"url\"} JSON line, skipped", path, number + 1)
                continue
            good += 1
            yield image_id, url
    if bad["bad_record"] and not good:
        raise InputDataError(f"{path}: no line is an {{\"image\": ..., \"url\": ...}} record; "
                             "--images takes images.json in JSON lines")


def load_done(out_dir: Path, retry_failed: bool) -> Set[str]:
    """Ids already in a finished shard, plus permanently failed ids unless `retry_failed`."""
    salvaged = salvage_partial_shards(out_dir)
    if salvaged:
        logger.warning("kept %d images from shards of an interrupted run", salvaged)
    done: Set[str] = set()
    for shard in list_shards(out_dir):
        done.update(json.loads(files["json"])["image"] for _, files in iter_samples(shard))
    if not retry_failed:
        for log in out_dir.glob("failures-*.jsonl"):
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash
                    continue
                if not entry.get("transient"):
                    done.add(entry["image"])
    return done


def download_images(cfg: DownloadConfig) -> DownloadSummary:
    """Download this part of the catalogue into `cfg.out_dir`; see the module docstring.

    Raises:
        InputDataError: images.json unreadable or the output dir not writable.
    """
    start = time.monotonic()
    try:
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputDataError(f"cannot create {cfg.out_dir}: {exc}") from None
    done = load_done(cfg.out_dir, cfg.retry_failed)
    counts: Counter = Counter()
    bad: Counter = Counter()
    skipped = 0
    failures = open(cfg.out_dir / f"failures-{cfg.part:04d}.jsonl", "a", encoding="utf-8")
    writer = ShardWriter(cfg.out_dir, prefix=f"{cfg.part:04d}-", max_count=cfg.shard_size)
    last_report = time.monotonic()

    def collect(future: Future) -> None:
        try:
            image_id, url, jpeg, meta = future.result()
        except FetchError as exc:
            image_id, url = future.record  # type: ignore[attr-defined]
            counts[exc.outcome] += 1
            entry = {"image": image_id, "url": url, "reason": exc.outcome, "detail": exc.detail,
                     "transient": exc.transient}
            failures.write(json.dumps(entry, ensure_ascii=False) + "\n")
            failures.flush()
            return
        writer.write(sample_key(image_id), {"jpg": jpeg, "json": json.dumps(meta, ensure_ascii=False).encode()})
        counts["ok"] += 1

    with failures, writer, ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="fetch") as pool:
        pending: Set[Future] = set()
        for image_id, url in iter_records(cfg.images, cfg, bad):
            if image_id in done:
                skipped += 1
                continue
            done.add(image_id)  # a repeated id in images.json is fetched once
            future = pool.submit(fetch_one, image_id, url, cfg)
            future.record = (image_id, url)  # type: ignore[attr-defined]
            pending.add(future)
            if len(pending) >= 2 * cfg.concurrency:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for item in finished:
                    collect(item)
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                logger.info("%d processed (%d ok), %d skipped", sum(counts.values()), counts["ok"], skipped)
        for item in wait(pending).done:
            collect(item)
    return DownloadSummary(tuple((name, counts[name]) for name in OUTCOMES), skipped, bad["bad_record"],
                           time.monotonic() - start)
