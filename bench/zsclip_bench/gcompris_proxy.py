"""More proxy data sets that are not evaluation data: the pictures inside Debian's GCompris.

`apt-get install gcompris-qt-data` (GPL-3) ships the activities' pictures packed in Qt resource files
(`/usr/share/gcompris-qt/rcc/*.rcc`). This module reads four of them (`read_rcc`) and writes one
contest-layout folder (`datasets/` + `gt.json`, pictures pasted onto white):

- `gc_coarse`: the categorisation game's photos by folder — tools, fishes, monuments and the renewable
  energy photos split by file name (dam, solar, windmill); 6 general classes, unbalanced (5 to 39 photos);
- `gc_tools`: its tool photos by file name (hammer1..9 → «молоток», …); 13 classes, 1 to 9 photos each;
- `gc_animals`: the farm and world animal explorers' photos, one per class (24 classes, «нарвал», «коала»);
- `gc_words`: the vocabulary game's sample *drawings* of concrete things, named by the package's own
  Russian word list (`content-ru.json`); colours, numbers, people and body parts are left out (54 classes).

The Russian class names of the first three are fixed here, a priori, from the file names (not from any
model output). With the Tux Paint sets (`tux_proxy`) they make the proxy suite the project decides on.

    python -m zsclip_bench.gcompris_proxy OUT_DIR [--rcc /usr/share/gcompris-qt/rcc]
"""

from __future__ import annotations

import json
import logging
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Dict, List, Mapping, Tuple

import click
from zsclip.atomic import atomic_dir
from zsclip.cli import common_options, run_guarded, setup_logging
from zsclip.errors import InputDataError

from zsclip_bench.proxy_layout import check_new_dir, write_dataset, write_gt

logger = logging.getLogger(__name__)

DEFAULT_RCC = Path("/usr/share/gcompris-qt/rcc")
RCC_FILES = ("categorization.rcc", "explore_farm_animals.rcc", "explore_world_animals.rcc", "lang.rcc")
ACTIVITIES = "gcompris/src/activities"
CATEGORY_IMAGES = f"{ACTIVITIES}/categorization/resource/images"
WORD_PICTURES = f"{ACTIVITIES}/lang/resource/words_sample"
WORD_NAMES = f"{ACTIVITIES}/lang/resource/content-ru.json"

COARSE: Mapping[str, str] = {
    "tools": "инструмент", "fishes": "рыба", "monuments": "достопримечательность",
    "renewable/dam": "плотина", "renewable/solar": "солнечная батарея", "renewable/windmill": "ветряная мельница",
}
TOOLS: Mapping[str, str] = {
    "hammer": "молоток", "measuringTape": "рулетка", "multimeter": "мультиметр", "plier": "плоскогубцы",
    "scissors": "ножницы", "screwDriver": "отвертка", "tweezer": "пинцет", "wrench": "гаечный ключ",
    "sideCutter": "кусачки", "sickle": "серп", "nailCutter": "щипчики для ногтей", "spray": "баллончик с краской",
    "cuttingTool": "резак",
}
ANIMALS: Mapping[str, str] = {
    "cat": "кошка", "chicken": "курица", "cow": "корова", "dog": "собака", "duck": "утка", "horse": "лошадь",
    "owl": "сова", "pig": "свинья", "sheep": "овца", "bison": "бизон", "chameleon": "хамелеон",
    "crocodile": "крокодил", "dragon": "комодский варан", "giraffe": "жираф", "hedgehog": "еж", "jaguar": "ягуар",
    "kangaroo": "кенгуру", "koala": "коала", "lemur": "лемур", "moose": "лось", "narwhal": "нарвал",
    "panda": "панда", "polar_bear": "белый медведь", "scarlet_macaw": "попугай ара",
}
NOT_THINGS = frozenset(
    "black blue brown gray green pink red white yellow color mauve orange-color boy brother child dad family friend "
    "girl grandmother man mother son sister woman arm back ear eyes face finger foot hair hand head knee leg mouth "
    "neck nose skin teeth thumb tongue brain animal".split()
)
PICTURE_SUFFIXES = (".webp", ".jpg", ".jpeg", ".png")

_HEADER = struct.Struct(">4sIIII")
_ZLIB, _DIRECTORY, _ZSTD = 0x1, 0x2, 0x4


@dataclass(frozen=True)
class GComprisProxyConfig:
    out_dir: Path
    rcc_dir: Path = DEFAULT_RCC


def read_rcc(path: Path) -> Dict[str, bytes]:
    """Every file of a Qt binary resource (`rcc`, format 1-3, zlib or uncompressed): path -> bytes.

    Raises:
        InputDataError: not a Qt resource file, truncated, or zstd-compressed (not read here).
    """
    blob = path.read_bytes()
    if len(blob) < _HEADER.size or blob[:4] != b"qres":
        raise InputDataError(f"{path}: not a Qt resource file (no 'qres' header)")
    _, version, tree, data, names = _HEADER.unpack_from(blob)
    node_size = 22 if version >= 2 else 14
    files: Dict[str, bytes] = {}
    visited: set = set()

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # length, hash
        return blob[start : start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        if index in visited:
            raise InputDataError(f"{path}: damaged Qt resource file (node {index} listed twice)")
        visited.add(index)
        at = tree + index * node_size
        name_offset, flags = struct.unpack_from(">IH", blob, at)
        path_here = f"{prefix}/{name_at(name_offset)}" if index else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", blob, at + 6)
            for child in range(first, first + count):
                walk(child, path_here)
            return
        (offset,) = struct.unpack_from(">I", blob, at + 10)
        (size,) = struct.unpack_from(">I", blob, data + offset)
        payload = blob[data + offset + 4 : data + offset + 4 + size]
        if len(payload) != size:
            raise InputDataError(f"{path}: truncated at {path_here.lstrip('/')}")
        if flags & _ZSTD:
            raise InputDataError(f"{path}: {path_here.lstrip('/')} is zstd-compressed, which this reader does not do")
        files[path_here.lstrip("/")] = zlib.decompress(payload[4:]) if flags & _ZLIB else payload

    try:
        walk(0, "")
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: damaged Qt resource file ({exc})") from None
    return files


def picture_stem(name: str) -> str:
    """`hammer3.webp` -> `hammer` (the numbering of several photos of one thing dropped)."""
    return re.sub(r"\d+$", "", PurePosixPath(name).stem)


def choose_pictures(resources: Mapping[str, bytes]) -> Dict[str, List[Tuple[str, str]]]:
    """Dataset -> [(resource path, Russian class name)], sorted by path."""
    pictures = sorted(p for p in resources if p.lower().endswith(PICTURE_SUFFIXES))
    sets: Dict[str, List[Tuple[str, str]]] = {"gc_coarse": [], "gc_tools": [], "gc_animals": [], "gc_words": []}
    words = json.loads(resources[WORD_NAMES].decode("utf-8")) if WORD_NAMES in resources else {}
    for path in pictures:
        folder, file_stem = str(PurePosixPath(path).parent), PurePosixPath(path).stem
        if folder.startswith(CATEGORY_IMAGES + "/"):
            category, thing = folder[len(CATEGORY_IMAGES) + 1 :], picture_stem(path)
            key = f"{category}/{thing}" if category == "renewable" else category
            if key in COARSE:
                sets["gc_coarse"].append((path, COARSE[key]))
            if category == "tools" and thing in TOOLS:
                sets["gc_tools"].append((path, TOOLS[thing]))
        elif folder.startswith(ACTIVITIES + "/explore_") and file_stem in ANIMALS:
            sets["gc_animals"].append((path, ANIMALS[file_stem]))
        elif folder == WORD_PICTURES and file_stem not in NOT_THINGS:
            name = words.get(file_stem + ".ogg")
            if isinstance(name, str) and name.strip():
                sets["gc_words"].append((path, name.strip()))
    return {name: items for name, items in sets.items() if items}


def build_gcompris_proxy(cfg: GComprisProxyConfig) -> Dict[str, Dict[str, int]]:
    """Write `datasets/` + `gt.json` under `cfg.out_dir` (built aside and renamed into place: a failure
    leaves nothing); returns {dataset: {"images", "classes"}}.

    Raises:
        InputDataError: resource files missing or unreadable, no pictures found, or `out_dir` not empty.
    """
    target = Path(cfg.out_dir)
    check_new_dir(target)
    missing = [name for name in RCC_FILES if not (Path(cfg.rcc_dir) / name).is_file()]
    if missing:
        raise InputDataError(f"{cfg.rcc_dir}: no {', '.join(missing)}; apt-get install gcompris-qt-data "
                             "or pass --rcc DIR")
    resources: Dict[str, bytes] = {}
    for name in RCC_FILES:
        resources.update(read_rcc(Path(cfg.rcc_dir) / name))
    sets = choose_pictures(resources)
    if not sets:
        raise InputDataError(f"{cfg.rcc_dir}: none of the expected GCompris pictures in {', '.join(RCC_FILES)}")
    counts: Dict[str, Dict[str, int]] = {}
    gt: Dict[str, Dict[str, int]] = {}
    with atomic_dir(target) as out, tempfile.TemporaryDirectory() as scratch:
        for dataset, items in sets.items():
            classes = sorted({name for _, name in items})
            files = []
            for i, (path, name) in enumerate(items):
                file = Path(scratch) / f"{dataset}-{i:04d}{PurePosixPath(path).suffix}"
                file.write_bytes(resources[path])
                files.append((file, classes.index(name)))
            gt[dataset] = write_dataset(out / "datasets" / dataset, classes, files)
            counts[dataset] = {"images": len(gt[dataset]), "classes": len(classes)}
        write_gt(out / "gt.json", gt)
    return counts


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--rcc", "rcc_dir", type=click.Path(path_type=Path), default=DEFAULT_RCC, show_default=True,
              help="GCompris resource folder (Debian: apt-get install gcompris-qt-data).")
@common_options
@run_guarded
def main(out_dir: Path, rcc_dir: Path, verbose: int, quiet: bool) -> None:
    """Build proxy sets (photos and drawings with Russian names) from GCompris' pictures."""
    setup_logging(verbose, quiet, "gcompris-proxy")
    counts = build_gcompris_proxy(GComprisProxyConfig(out_dir=out_dir, rcc_dir=rcc_dir))
    for name, count in counts.items():
        click.echo(f"{name}: {count['images']} pictures, {count['classes']} classes")
    click.echo(f"wrote {out_dir} (datasets/ + gt.json)")


if __name__ == "__main__":
    main()
