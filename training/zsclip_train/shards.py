"""WebDataset-compatible tar shards: crash-safe writing, salvage of partial shards, member indexing.

A shard is a plain tar whose members are `<key>.<ext>`; the files of one sample share a key and are
written together (`.jpg` first, `.json` last, so a sample is complete iff its `.json` is present).
The writer appends to `NAME.tar.partial` and flushes after every sample; `close` renames it to
`NAME.tar`. After a crash, `salvage_partial_shards` keeps every complete sample of a partial shard,
so a restarted download loses at most the requests that were in flight.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
_UNSAFE_KEY = re.compile(r"[^0-9A-Za-z_-]")
# (offset of the data in the tar, size) per extension of one sample
MemberIndex = Dict[str, Tuple[int, int]]


def sample_key(image_id: str) -> str:
    """A WebDataset-safe key (no dots or slashes) for an image id; the real id goes in the `.json`."""
    return _UNSAFE_KEY.sub("_", image_id)[:200] or "_"


class ShardWriter:
    """Writes samples into `out_dir/<prefix><index:06d>.tar`, at most `max_count` samples per shard."""

    def __init__(self, out_dir: Path, prefix: str = "", max_count: int = 1000) -> None:
        self.out_dir = Path(out_dir)
        self.prefix = prefix
        self.max_count = max_count
        self.index = next_shard_index(self.out_dir, prefix)
        self.count = 0
        self._tar: Optional[tarfile.TarFile] = None
        self._file: Optional[io.BufferedWriter] = None

    @property
    def final_path(self) -> Path:
        return self.out_dir / f"{self.prefix}{self.index:06d}.tar"

    def write(self, key: str, files: Mapping[str, bytes]) -> None:
        """Append one sample (extension -> bytes, written in the given order) and flush it to disk."""
        if self._tar is None:
            self._file = open(str(self.final_path) + PARTIAL_SUFFIX, "wb")
            self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        for ext, data in files.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mode = 0o644
            self._tar.addfile(info, io.BytesIO(data))
        assert self._file is not None
        self._file.flush()
        self.count += 1
        if self.count >= self.max_count:
            self.close()

    def close(self) -> None:
        """Finish the current shard (if any) and rename it into place."""
        if self._tar is None:
            return
        assert self._file is not None
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(str(self.final_path) + PARTIAL_SUFFIX, self.final_path)
        self._tar = self._file = None
        self.index += 1
        self.count = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def next_shard_index(out_dir: Path, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d{6})\.tar(?:" + re.escape(PARTIAL_SUFFIX) + ")?$")
    numbers = [int(m.group(1)) for p in Path(out_dir).glob(f"{prefix}*.tar*") if (m := pattern.match(p.name))]
    return max(numbers) + 1 if numbers else 0


def list_shards(directory: Path) -> List[Path]:
    """The finished shards of `directory`, sorted by name."""
    return sorted(Path(directory).glob("*.tar"))


def iter_samples(path: Path) -> Iterator[Tuple[str, Dict[str, bytes]]]:
    """Yield (key, {ext: bytes}) for each complete sample of a shard; stop quietly at a truncated tail."""
    key: Optional[str] = None
    files: Dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stem, _, ext = member.name.partition(".")
                handle = tar.extractfile(member)
                data = handle.read() if handle else b""
                if len(data) != member.size:
                    break
                if stem != key:
                    key, files = stem, {}
                files[ext] = data
                if ext == "json":
                    yield key, files
    except (tarfile.TarError, EOFError, OSError) as exc:
        logger.debug("%s: stopped at a damaged member (%s)", path, exc)


def index_shard(path: Path) -> List[Tuple[str, MemberIndex]]:
    """(key, {ext: (data offset, size)}) per sample, for random access with one `pread` per file."""
    samples: List[Tuple[str, MemberIndex]] = []
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            stem, _, ext = member.name.partition(".")
            if not samples or samples[-1][0] != stem:
                samples.append((stem, {}))
            samples[-1][1][ext] = (member.offset_data, member.size)
    return samples


def read_member(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def salvage_partial_shards(directory: Path) -> int:
    """Turn every `*.tar.partial` into a finished shard holding its complete samples. Returns samples kept."""
    kept = 0
    for partial in sorted(Path(directory).glob("*.tar" + PARTIAL_SUFFIX)):
        final = Path(str(partial)[: -len(PARTIAL_SUFFIX)])
        samples = list(iter_samples(partial))
        if samples:
            tmp = Path(str(final) + ".salvage")
            with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for key, files in samples:
                    for ext, data in files.items():
                        info = tarfile.TarInfo(f"{key}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
            os.replace(tmp, final)
        partial.unlink()
        logger.info("salvaged %d complete samples from %s", len(samples), partial.name)
        kept += len(samples)
    return kept
