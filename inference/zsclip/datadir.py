"""Contest-style data dirs: DATA_DIR/<dataset>/{classes.json, img/}."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from zsclip.errors import InputDataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """One dataset: its name (the folder), class names and image files (sorted)."""

    name: str
    classes: Tuple[str, ...]
    images: Tuple[Path, ...]


def read_classes(path: Path) -> Tuple[str, ...]:
    """Read and validate a `classes.json` (a non-empty JSON list of strings).

    Duplicated names are kept (indices must not shift) with a warning.

    Raises:
        InputDataError: unreadable, invalid JSON, not a list, empty, or a non-string entry.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        hint = "; JSON allows no trailing comma" if re.search(r",\s*[\]}]", text) else ""
        raise InputDataError(f"{path}: invalid JSON ({exc}{hint})") from None
    if not isinstance(data, list):
        raise InputDataError(f"{path}: must be a JSON list of class names, got {type(data).__name__}")
    if not data:
        raise InputDataError(f"{path}: the class list is empty")
    bad = [i for i, name in enumerate(data) if not isinstance(name, str) or not name.strip()]
    if bad:
        raise InputDataError(f"{path}: entry {bad[0]} is not a non-empty string ({data[bad[0]]!r})")
    seen: dict = {}
    for i, name in enumerate(data):
        key = name.strip().lower()
        if key in seen:
            logger.warning("%s: class %d %r duplicates class %d; the first one wins ties", path, i, name, seen[key])
        seen.setdefault(key, i)
    return tuple(data)


def list_images(img_dir: Path) -> Tuple[Path, ...]:
    """Every regular, non-hidden file in `img_dir` (sorted): each one gets a prediction."""
    files = sorted(p for p in img_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    stems: dict = {}
    for path in files:
        if path.stem in stems:
            logger.warning("%s and %s share the stem %r; OUT.json keeps one", stems[path.stem].name, path.name, path.stem)
        stems[path.stem] = path
    return tuple(files)


def find_datasets(data_dir: Path) -> List[Dataset]:
    """All datasets under `data_dir`, sorted by name.

    `data_dir` itself may be one dataset (it holds classes.json + img/). Sub-folders without
    them are skipped with a warning.

    Raises:
        InputDataError: `data_dir` missing, or no dataset found, or a broken classes.json.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputDataError(f"data dir {data_dir} does not exist or is not a directory")
    if (data_dir / "img").is_dir() and not (data_dir / "classes.json").exists():  # meant as one dataset
        raise InputDataError(f"{data_dir / 'classes.json'} is missing: a dataset folder holds classes.json "
                             f"(a JSON list of class names) beside img/")
    candidates = [data_dir] if (data_dir / "classes.json").exists() else sorted(
        p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    datasets = []
    for folder in candidates:
        classes_path, img_dir = folder / "classes.json", folder / "img"
        missing = [str(path) + suffix for path, ok, suffix in ((classes_path, classes_path.is_file(), ""),
                                                                (img_dir, img_dir.is_dir(), "/")) if not ok]
        if missing:
            logger.warning("skipping %s: %s missing (a dataset folder holds classes.json and img/)", folder,
                           " and ".join(missing) + (" are" if len(missing) > 1 else " is"))
            continue
        images = list_images(img_dir)
        if not images:
            logger.warning("dataset %s: %s holds no image; it gets no predictions", folder.name, img_dir)
        datasets.append(Dataset(folder.name, read_classes(classes_path), images))
    if not datasets:
        raise InputDataError(f"no dataset (a folder with classes.json + img/) found in {data_dir}{layout_hint(data_dir)}")
    return datasets


def layout_hint(data_dir: Path) -> str:
    """"; did you mean X?" when X, one level up or down, is a data dir (the usual slip), else ""."""
    if (data_dir.parent / "classes.json").is_file():  # given DATASET/img
        return f"; did you mean {data_dir.parent}?"
    try:
        for child in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if any((grandchild / "classes.json").is_file() for grandchild in child.iterdir() if grandchild.is_dir()):
                return f"; did you mean {child}?"  # given the folder above DATA_DIR (e.g. with gt.json)
    except OSError:  # an unreadable sub-folder: no hint
        pass
    return ""
