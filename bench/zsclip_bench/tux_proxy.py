"""Real-photo proxy data sets that are not evaluation data: Debian's Tux Paint photo stamps.

`apt-get install tuxpaint-stamps-default` (GPL-2) ships a few hundred real photographs cut out onto a
transparent background, in category folders (`animals/birds/crow.png`), each with a `.txt` holding its
description in many languages (`ru.utf8=Ворона.`). This module turns them into two contest-layout sets
with `gt.json`, pasted onto white:

- `fine/`: one dataset per category folder with at least `min_fine` photo stamps; the classes are the
  stamps' own Russian descriptions (one photo each; stamps sharing a description share the class). Hard:
  near-duplicate names («Корова» / «Бык»). Tests fine-grained zero-shot naming.
- `coarse/`: one dataset of the categories in `COARSE`, named in Russian a priori; several photos per
  class, unbalanced. Tests general names, label spreading and few-shot.

Drawn stamps (`cartoon/`, `symbols/`) and holiday, road-sign and flag folders are skipped. The project
decides image-side knobs on these sets (numbers in the issues' notes), never on the evaluation sets.

    python -m zsclip_bench.tux_proxy OUT_DIR [--stamps /usr/share/tuxpaint/stamps]
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import click
from zsclip.atomic import atomic_dir
from zsclip.cli import common_options, run_guarded, setup_logging
from zsclip.errors import ConfigError, InputDataError

from zsclip_bench.proxy_layout import check_new_dir, write_dataset, write_gt

logger = logging.getLogger(__name__)

DEFAULT_STAMPS = Path("/usr/share/tuxpaint/stamps")
SKIPPED_FOLDERS = frozenset({"cartoon", "symbols", "seasonal", "roadsigns", "flags"})
COARSE: Mapping[str, str] = {
    "animals/mammals": "млекопитающее", "animals/birds": "птица", "food/fruit": "фрукт",
    "plants/flowers": "цветок", "food/vegetables": "овощ", "animals/fish": "рыба",
    "space/planets": "планета", "animals/insects": "насекомое", "hobbies/music": "музыкальный инструмент",
    "household/tools": "инструмент", "plants/trees": "дерево",
}


@dataclass(frozen=True)
class TuxProxyConfig:
    out_dir: Path
    stamps: Path = DEFAULT_STAMPS
    min_fine: int = 5
    coarse: Mapping[str, str] = field(default_factory=lambda: dict(COARSE))

    def __post_init__(self) -> None:
        if self.min_fine < 2:
            raise ConfigError(f"min_fine must be >= 2, got {self.min_fine}")


def russian_name(txt: Path) -> Optional[str]:
    """The `ru.utf8=` description of a stamp, without trailing full stops; None when there is none."""
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("ru.utf8="):
            name = re.sub(r"[.\s]+$", "", line.split("=", 1)[1]).strip()
            return name or None
    return None


def find_stamps(root: Path) -> Dict[str, List[Tuple[Path, str]]]:
    """Category ("animals/birds") -> [(png, Russian name)], photo stamps only, sorted by path.

    Raises:
        InputDataError: `root` is not a stamps folder.
    """
    if not root.is_dir():
        raise InputDataError(f"{root}: no Tux Paint stamps here; apt-get install tuxpaint-stamps-default "
                             "or pass --stamps DIR")
    groups: Dict[str, List[Tuple[Path, str]]] = {}
    for png in sorted(root.rglob("*.png")):
        parts = png.relative_to(root).parts
        if len(parts) < 3 or SKIPPED_FOLDERS.intersection(parts):
            continue
        txt = png.with_suffix(".txt")
        name = russian_name(txt) if txt.is_file() else None
        if name is None:
            logger.info("%s: no Russian description, skipped", png)
            continue
        groups.setdefault("/".join(parts[:2]), []).append((png, name))
    if not groups:
        raise InputDataError(f"{root}: no photo stamps with a Russian description")
    return groups


def build_tux_proxy(cfg: TuxProxyConfig) -> Dict[str, Dict[str, int]]:
    """Write `fine/` and `coarse/` (each `datasets/` + `gt.json`) under `cfg.out_dir` (built aside and
    renamed into place: a failure leaves nothing); returns {"fine/<dataset>": {"images", "classes"}, ...}.

    Raises:
        InputDataError: no stamps, or `out_dir` exists and is not empty.
    """
    target = Path(cfg.out_dir)
    check_new_dir(target)
    groups = find_stamps(Path(cfg.stamps))
    with atomic_dir(target) as out:
        return write_proxy(out, groups, cfg)


def write_proxy(out: Path, groups: Dict[str, List[Tuple[Path, str]]], cfg: TuxProxyConfig) -> Dict[str, Dict[str, int]]:
    counts: Dict[str, Dict[str, int]] = {}
    fine_gt: Dict[str, Dict[str, int]] = {}
    for group, stamps in sorted(groups.items()):
        if len(stamps) < cfg.min_fine:
            continue
        classes = sorted({name for _, name in stamps})
        name = group.replace("/", "_")
        fine_gt[name] = write_dataset(out / "fine" / "datasets" / name, classes,
                                      [(png, classes.index(label)) for png, label in stamps])
        counts[f"fine/{name}"] = {"images": len(fine_gt[name]), "classes": len(classes)}
    coarse_classes = sorted(set(cfg.coarse.values()))
    coarse_items = [(png, coarse_classes.index(cfg.coarse[group]))
                    for group, stamps in sorted(groups.items()) if group in cfg.coarse for png, _ in stamps]
    coarse_gt = {}
    if coarse_items:
        coarse_gt["tux_coarse"] = write_dataset(out / "coarse" / "datasets" / "tux_coarse", coarse_classes, coarse_items)
        counts["coarse/tux_coarse"] = {"images": len(coarse_gt["tux_coarse"]), "classes": len(coarse_classes)}
    for split, gt in (("fine", fine_gt), ("coarse", coarse_gt)):
        if gt:
            write_gt(out / split / "gt.json", gt)
    return counts


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--stamps", type=click.Path(path_type=Path), default=DEFAULT_STAMPS, show_default=True,
              help="Tux Paint stamps folder (Debian: apt-get install tuxpaint-stamps-default).")
@click.option("--min-fine", type=int, default=5, show_default=True,
              help="Photo stamps a category needs to become a fine dataset.")
@common_options
@run_guarded
def main(out_dir: Path, stamps: Path, min_fine: int, verbose: int, quiet: bool) -> None:
    """Build real-photo proxy sets (fine, coarse) from Tux Paint's photo stamps."""
    setup_logging(verbose, quiet, "tux-proxy")
    counts = build_tux_proxy(TuxProxyConfig(out_dir=out_dir, stamps=stamps, min_fine=min_fine))
    for name, count in counts.items():
        click.echo(f"{name}: {count['images']} photos, {count['classes']} classes")
    click.echo(f"wrote {out_dir}/fine and {out_dir}/coarse (datasets/ + gt.json)")


if __name__ == "__main__":
    main()
