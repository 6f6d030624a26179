"""Query cleaning and `zsclip-train prepare`: metadata.json + download shards -> an indexed training set.

The prepared directory holds:

    index.npz       per image: shard number, JPEG offset/size in the shard, queries offset/size
    queries.txt     per image one UTF-8 line, its cleaned queries joined by TAB
    shards.json     the shard directory and shard names the index refers to
    tokenizer.json  a WordPiece tokenizer trained on the cleaned queries (data_tokenizer)
    stats.json      the report printed by `render`

Everything fit needs is memory-mapped or random access, so each rank and loader worker stays small.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

import numpy as np
from zsclip.atomic import atomic_dir
from zsclip.errors import ConfigError, InputDataError

from zsclip_train.shards import index_shard, list_shards, read_member

logger = logging.getLogger(__name__)

DEFAULT_STOP_WORDS: FrozenSet[str] = frozenset("""
картинка картинки картинку картинок фото фотка фотки фоточки фотография фотографии фотографию изображение
изображения изображений скачать бесплатно бесплатные обои заставка заставки png jpg jpeg gif hd 4k fullhd
смотреть онлайн без регистрации красивые красивая красивый прикольные прикольная смешные лучшие топ
арт на для и в с по
""".split())
_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:ru|com|net|org|рф|su|info|io)\b(?:/\S*)?")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(  # Russian +7/8 numbers, other +CC numbers, local 123-45-67 (not "2023 - 2024")
    r"(?<![\w+])(?:\+7|8)[\s(-]*\d{3}[\s)-]*\d{3}[\s-]*\d{2}[\s-]*\d{2}(?!\w)"
    r"|\+\d[\d\s().-]{8,}\d(?!\w)|\b\d{3}-\d{2}-\d{2}\b"
)
_NOT_WORD = re.compile(r"[^\w\s-]|_")
_LONE_DASH = re.compile(r"(?:(?<=\s)|^)-+|-+(?=\s|$)")
_SPACES = re.compile(r"\s+")
REASONS = ("ok", "empty", "number", "stop_words", "too_short")


@dataclass(frozen=True)
class QueryCleanConfig:
    """What counts as an uninformative query, and how many to keep per image."""

    stop_words: FrozenSet[str] = DEFAULT_STOP_WORDS
    min_chars: int = 2
    max_queries: int = 32

    def __post_init__(self) -> None:
        for name in ("min_chars", "max_queries"):
            if getattr(self, name) < 1:
                raise ConfigError.for_field(name, f"must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_file(cls, path: Path) -> QueryCleanConfig:
        """Stop words from a file, one per line (`#` starts a comment), normalised like queries.

        Raises:
            ConfigError: the file cannot be read.
        """
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read stop-word list {path}: {exc}") from None
        words = {normalize_text(line.split("#")[0]) for line in lines}
        return cls(stop_words=frozenset(w for w in words if w))


def normalize_text(text: str) -> str:
    """NFKC, lowercase, ё->е, punctuation -> space, collapsed whitespace (no URL/phone removal)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("ё", "е")
    text = _LONE_DASH.sub(" ", _NOT_WORD.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


def classify_query(text: str, cfg: QueryCleanConfig = QueryCleanConfig()) -> Tuple[Optional[str], str]:
    """(cleaned query or None, reason): the reason is one of REASONS."""
    text = unicodedata.normalize("NFKC", text).lower().replace("ё", "е")
    for pattern in (_EMAIL, _URL, _PHONE):
        text = pattern.sub(" ", text)
    text = normalize_text(text)
    if not text:
        return None, "empty"
    words = text.split()
    if all(w.replace("-", "").isdigit() for w in words):
        return None, "number"
    if all(w in cfg.stop_words or w.isdigit() for w in words):
        return None, "stop_words"
    if len(text) < cfg.min_chars:
        return None, "too_short"
    return text, "ok"


def clean_query(text: str, cfg: QueryCleanConfig = QueryCleanConfig()) -> Optional[str]:
    """The cleaned query, or None when it is uninformative."""
    return classify_query(text, cfg)[0]


def clean_queries(texts: Iterable[str], cfg: QueryCleanConfig, reasons: Optional[Counter] = None) -> List[str]:
    """Clean, drop uninformative, dedupe (first occurrence wins), cap at `max_queries`."""
    kept: Dict[str, None] = {}
    for text in texts:
        cleaned, reason = classify_query(str(text), cfg)
        if reasons is not None:
            reasons[reason if cleaned is None or cleaned not in kept else "duplicate"] += 1
        if cleaned is not None and len(kept) < cfg.max_queries:
            kept.setdefault(cleaned)
    return list(kept)


@dataclass(frozen=True)
class PrepareConfig:
    """Inputs and outputs of `prepare_dataset`."""

    metadata: Path
    shard_dir: Path
    out_dir: Path
    clean: QueryCleanConfig = field(default_factory=QueryCleanConfig)
    vocab_size: int = 16000
    top_words: int = 50

    def __post_init__(self) -> None:
        if self.vocab_size < 16:
            raise ConfigError.for_field("vocab_size", f"must be >= 16, got {self.vocab_size}")


@dataclass(frozen=True)
class PrepareStats:
    """The prepare report (also written as stats.json)."""

    data: Dict[str, object]

    def render(self) -> str:
        d = self.data
        lines = [f"images with queries: {d['images']}, pairs: {d['pairs']}",
                 f"query outcomes: {d['query_outcomes']}",
                 f"pairs dropped, image not downloaded: {d['pairs_image_missing']} "
                 f"({d['images_missing']} images); downloaded images without queries: {d['images_without_queries']}",
                 f"queries per image: {d['queries_per_image']}",
                 f"query length in words: {d['words_per_query']}",
                 "top words: " + ", ".join(f"{w} {n}" for w, n in list(d["top_words"])[:20])]  # type: ignore[call-overload]
        return "\n".join(lines)


def read_metadata(path: Path, cfg: QueryCleanConfig, reasons: Counter) -> Dict[str, List[str]]:
    """image id -> cleaned, deduped queries (lines of the same id are merged).

    Raises:
        InputDataError: unreadable file.
    """
    raw: Dict[str, List[str]] = {}
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise InputDataError(f"cannot read {path}: {exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                image_id, queries = str(record["image"]), record["queries"]
                if isinstance(queries, str) or not isinstance(queries, list):
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError):
                reasons["bad_record"] += 1
                logger.warning("%s:%d: not an {\"image\", \"queries\": [...]} JSON line, skipped", path, number)
                continue
            raw.setdefault(image_id, []).extend(str(q) for q in queries)
    return {image_id: clean_queries(qs, cfg, reasons) for image_id, qs in raw.items()}


def histogram(values: Iterable[int], edges: Tuple[int, ...]) -> Dict[str, int]:
    """Counts per bucket `edges[i] .. edges[i+1]-1`, the last bucket open-ended."""
    counts = Counter(values)
    out = {}
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        label = f"{low}+" if high is None else (str(low) if high == low + 1 else f"{low}-{high - 1}")
        out[label] = sum(n for v, n in counts.items() if v >= low and (high is None or v < high))
    return out


def prepare_dataset(cfg: PrepareConfig) -> PrepareStats:
    """Clean queries, join them with the downloaded images, write the prepared dir (see module docstring).

    Raises:
        InputDataError: unreadable inputs, no shard, or no image with a usable query.
    """
    reasons: Counter = Counter()
    queries = read_metadata(cfg.metadata, cfg.clean, reasons)
    shards = list_shards(cfg.shard_dir)
    if not shards:
        raise InputDataError(f"no *.tar shard in {cfg.shard_dir}; run `zsclip-train download` first")
    with atomic_dir(cfg.out_dir, build_name=cfg.out_dir.name + ".partial") as tmp:
        return write_prepared(tmp, cfg, queries, shards, reasons)


def write_prepared(tmp: Path, cfg: PrepareConfig, queries: Dict[str, List[str]], shards: List[Path],
                   reasons: Counter) -> PrepareStats:
    """Write the prepared dir's files into `tmp` (the build folder) and return its statistics."""
    from zsclip_train.data_tokenizer import train_tokenizer

    rows: List[Tuple[int, int, int, int, int]] = []
    seen, without_queries, offset = set(), 0, 0
    words: Counter = Counter()
    with open(tmp / "queries.txt", "wb") as text_out:
        for shard_number, shard in enumerate(shards):
            for _, members in index_shard(shard):
                if "json" not in members or "jpg" not in members:
                    continue
                image_id = json.loads(read_member(shard, *members["json"]))["image"]
                if image_id in seen:
                    continue
                seen.add(image_id)
                kept = queries.get(image_id)
                if not kept:
                    without_queries += 1
                    continue
                line = ("\t".join(kept) + "\n").encode("utf-8")
                text_out.write(line)
                rows.append((shard_number, *members["jpg"], offset, len(line) - 1))
                offset += len(line)
                for q in kept:
                    words.update(q.split())
    if not rows:
        raise InputDataError(f"no downloaded image of {cfg.shard_dir} has a usable query in {cfg.metadata}")
    table = np.asarray(rows, dtype=np.int64)
    np.savez(tmp / "index.npz", shard=table[:, 0].astype(np.int32), jpg_offset=table[:, 1],
             jpg_size=table[:, 2].astype(np.int32), text_offset=table[:, 3], text_size=table[:, 4].astype(np.int32))
    (tmp / "shards.json").write_text(json.dumps(
        {"shard_dir": str(Path(cfg.shard_dir).resolve()), "shards": [s.name for s in shards]}, indent=1))
    train_tokenizer(tmp / "queries.txt", cfg.vocab_size).save(str(tmp / "tokenizer.json"))
    kept_lists = [queries[i] for i in seen if queries.get(i)]
    missing = [i for i in queries if i not in seen and queries[i]]
    stats = PrepareStats({
        "images": len(rows), "pairs": sum(len(q) for q in kept_lists),
        "query_outcomes": dict(sorted(reasons.items())),
        "images_missing": len(missing), "pairs_image_missing": sum(len(queries[i]) for i in missing),
        "images_without_queries": without_queries,
        "queries_per_image": histogram((len(q) for q in kept_lists), (1, 2, 3, 4, 5, 10, 20)),
        "words_per_query": histogram((len(q.split()) for qs in kept_lists for q in qs), (1, 2, 3, 4, 5, 8)),
        "top_words": words.most_common(cfg.top_words),
    })
    (tmp / "stats.json").write_text(json.dumps(stats.data, ensure_ascii=False, indent=1), encoding="utf-8")
    return stats
