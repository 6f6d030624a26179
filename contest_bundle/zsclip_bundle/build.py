"""Assemble the submission archive: setup.sh, predict.sh, model/, wheels/, bundle.json."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from zsclip.errors import ConfigError, ZsclipError
from zsclip.manifest import load_manifest, write_manifest

from zsclip_bundle.wheels import check_target, collect_wheels, find_source_dir

logger = logging.getLogger(__name__)

MB = 1024 * 1024
STORED_SUFFIXES = (".whl", ".zip", ".gz", ".jpg", ".png")  # already compressed: deflate wastes time


class BundleError(ZsclipError):
    """The bundle cannot be built or is over the size limit."""


@dataclass(frozen=True)
class BundleConfig:
    """Everything one `zsclip-bundle` run needs."""

    model_dir: Path
    out_path: Path
    python_version: str = f"{sys.version_info[0]}.{sys.version_info[1]}"
    platforms: Tuple[str, ...] = ("manylinux2014_x86_64",)
    variant: Optional[str] = None  # None: the manifest's default; only that variant is shipped
    max_size_mb: float = 700.0
    find_links: Tuple[Path, ...] = ()
    offline: bool = False
    constraints: Tuple[str, ...] = ()
    source_dir: Optional[Path] = None

    def __post_init__(self) -> None:
        problem = check_target(self.python_version, self.platforms)
        if problem:
            raise ConfigError(problem)
        if self.max_size_mb <= 0:
            raise ConfigError.for_field("max_size_mb", f"must be > 0, got {self.max_size_mb}")


@dataclass
class BundleReport:
    """What went into the archive: compressed and raw bytes per entry, and the wheel versions."""

    out_path: Path
    entries: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # name -> (compressed, raw)
    versions: Dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.out_path.stat().st_size if self.out_path.exists() else sum(c for c, _ in self.entries.values())

    def breakdown(self) -> List[Tuple[str, int, int]]:
        """(group, compressed, raw), largest first: model files and wheels one by one, the rest together."""
        groups: Dict[str, List[int]] = {}
        for name, (packed, raw) in self.entries.items():
            top = name.split("/", 1)[0]
            key = "scripts and metadata"
            if top == "model":
                key = name
            elif top == "wheels":
                key = "-".join(name.split("-")[:2])  # wheels/numpy-1.26.4: the tags make rows too wide
            total = groups.setdefault(key, [0, 0])
            total[0] += packed
            total[1] += raw
        return sorted(((k, v[0], v[1]) for k, v in groups.items()), key=lambda r: -r[1])

    def format_breakdown(self) -> str:
        rows = [f"{'entry':<44} {'zipped MB':>10} {'raw MB':>9}"]
        rows += [f"{name:<44} {packed / MB:>10.2f} {raw / MB:>9.2f}" for name, packed, raw in self.breakdown()]
        model = sum(p for n, (p, _) in self.entries.items() if n.startswith("model/"))
        wheels = sum(p for n, (p, _) in self.entries.items() if n.startswith("wheels/"))
        label = f"total (model {model / MB:.1f} MB, wheels {wheels / MB:.1f} MB)"
        rows.append(f"{label:<44} {self.size / MB:>10.2f}")
        return "\n".join(rows)


def render_template(name: str, values: Dict[str, str]) -> str:
    text = resources.files("zsclip_bundle").joinpath("templates", name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def stage_model(model_dir: Path, dest: Path, variant: Optional[str]) -> Dict[str, str]:
    """Copy one variant of a model dir (verified) to `dest`; returns facts for bundle.json."""
    manifest = load_manifest(model_dir, verify=True)
    name = variant or manifest.default_variant
    chosen = manifest.variant(name)
    slim = dataclasses.replace(manifest, variants={name: chosen}, default_variant=name)
    dest.mkdir(parents=True)
    for file_name in slim.referenced_files():
        shutil.copy2(Path(model_dir) / file_name, dest / file_name)
    write_manifest(dest, slim)
    load_manifest(dest, verify=True)
    return {"model_id": manifest.model_id, "variant": name}


def predict_supports_decode_workers() -> bool:
    from zsclip.cli import predict_main

    return any(param.name == "decode_workers" for param in predict_main.params)


def stage_scripts(stage: Path, python_version: str, zsclip_version: str) -> None:
    values = {
        "PYTHON_VERSION": python_version,
        "ZSCLIP_VERSION": zsclip_version,
        "DECODE_WORKERS_ARG": '--decode-workers "$THREADS"' if predict_supports_decode_workers() else "",
    }
    for script in ("setup.sh", "predict.sh"):
        (stage / script).write_text(render_template(script, values), encoding="utf-8")
        (stage / script).chmod(0o755)


def write_zip(stage: Path, out_path: Path) -> Dict[str, Tuple[int, int]]:
    """Zip `stage` (exec bits kept) into `out_path`; returns name -> (compressed, raw)."""
    entries = {}
    with zipfile.ZipFile(out_path, "w") as archive:
        for path in sorted(stage.rglob("*")):
            if path.is_dir():
                continue
            name = path.relative_to(stage).as_posix()
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = zipfile.ZIP_STORED if path.suffix in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        for info in archive.infolist():
            entries[info.filename] = (info.compress_size, info.file_size)
    return entries


def build_bundle(cfg: BundleConfig) -> BundleReport:
    """Build the archive at `cfg.out_path` (atomically); refuse it when over `cfg.max_size_mb`.

    Raises:
        ModelDirError: the model dir is missing, incomplete or corrupt.
        BundleError: the archive would be too large.
        InputDataError: the output path is unusable.
        WheelError: a wheel could not be built or downloaded for the target.
    """
    from zsclip.predict import check_out_path

    out_path = Path(cfg.out_path)
    check_out_path(out_path)  # before minutes of wheel downloads: a directory, missing or read-only folder
    source_dir = cfg.source_dir or find_source_dir()
    with tempfile.TemporaryDirectory(prefix="zsclip-bundle-") as tmp:
        stage = Path(tmp) / "bundle"
        stage.mkdir()
        facts = stage_model(Path(cfg.model_dir), stage / "model", cfg.variant)
        versions = collect_wheels(stage / "wheels", source_dir, cfg.python_version, cfg.platforms,
                                  cfg.find_links, cfg.offline, cfg.constraints)
        stage_scripts(stage, cfg.python_version, versions["zsclip"])
        info = {**facts, "python": cfg.python_version, "platforms": list(cfg.platforms), "wheels": versions}
        (stage / "bundle.json").write_text(json.dumps(info, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                                           encoding="utf-8")
        partial = out_path.with_name(f".{out_path.name}.partial")
        try:
            entries = write_zip(stage, partial)
            report = BundleReport(partial, entries, versions)
            if report.size > cfg.max_size_mb * MB:
                raise BundleError(
                    f"bundle is {report.size / MB:.1f} MB, over the {cfg.max_size_mb:g} MB limit; largest: "
                    + ", ".join(f"{n} {p / MB:.0f} MB" for n, p, _ in report.breakdown()[:3])
                    + " (try --variant int8)\n" + report.format_breakdown()
                )
            os.replace(partial, out_path)
        finally:
            partial.unlink(missing_ok=True)
    report.out_path = out_path
    logger.info("bundle %s: %s", out_path, info)
    return report
