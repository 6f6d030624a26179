"""The wheels of a bundle: zsclip built from this repo, and its runtime dependencies for the target."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from zsclip.errors import ZsclipError

logger = logging.getLogger(__name__)

# Folders copied to build the zsclip wheel out of tree (no build/ or egg-info left in the repo).
SOURCE_ITEMS = ("pyproject.toml", "README.md", "LICENSE", "inference", "export", "training", "bench", "contest_bundle")
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-")


class WheelError(ZsclipError):
    """A wheel could not be built or downloaded for the target."""


def find_source_dir() -> Path:
    """The repo holding the `zsclip` package being run (its pyproject.toml).

    Raises:
        WheelError: zsclip is not installed from a source checkout.
    """
    import zsclip

    for parent in Path(zsclip.__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "inference" / "zsclip").is_dir():
            return parent
    raise WheelError("cannot find the zsclip source tree (pyproject.toml); pass --source DIR")


def run_pip(args: Sequence[str], what: str) -> None:
    """Run `python -m pip ARGS`; on failure raise with pip's last error lines."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    logger.info("%s: %s", what, " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        tail = " | ".join(lines[-4:])
        raise WheelError(f"{what} failed: {tail}")


def build_zsclip_wheel(source_dir: Path, dest: Path) -> Path:
    """Build the zsclip wheel from a copy of `source_dir` (no build isolation: works offline)."""
    with tempfile.TemporaryDirectory(prefix="zsclip-src-") as tmp:
        copy = Path(tmp) / "src"
        copy.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".venv")
        for item in SOURCE_ITEMS:
            src = source_dir / item
            if src.is_dir():
                shutil.copytree(src, copy / item, ignore=ignore)
            elif src.is_file():
                shutil.copy2(src, copy / item)
        readme = copy / "README.md"
        if not readme.exists():  # pyproject names it; the wheel only needs it to exist
            readme.write_text("zsclip\n", encoding="utf-8")
        run_pip(["wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(dest), str(copy)],
                "building the zsclip wheel")
    wheels = sorted(dest.glob("zsclip-*.whl"))
    if not wheels:
        raise WheelError(f"pip wheel left no zsclip-*.whl in {dest}")
    return wheels[-1]


def download_wheels(
    requirements: Sequence[str],
    dest: Path,
    python_version: str,
    platforms: Sequence[str],
    find_links: Sequence[Path] = (),
    offline: bool = False,
    constraints: Sequence[str] = (),
) -> None:
    """`pip download --only-binary=:all:` of `requirements` and their dependencies for the target."""
    args = ["download", "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
            "--dest", str(dest), "--quiet"]
    for platform in platforms:
        args += ["--platform", platform]
    for link in find_links:
        args += ["--find-links", str(link)]
    if offline:
        args.append("--no-index")
    with tempfile.TemporaryDirectory(prefix="zsclip-constraints-") as tmp:
        if constraints:
            path = Path(tmp) / "constraints.txt"
            path.write_text("\n".join(constraints) + "\n", encoding="utf-8")
            args += ["--constraint", str(path)]
        run_pip([*args, *requirements], f"downloading wheels for Python {python_version} {'/'.join(platforms)}")


def wheel_versions(folder: Path) -> Dict[str, str]:
    """Normalised project name -> version of every wheel in `folder`."""
    versions = {}
    for path in sorted(folder.glob("*.whl")):
        match = WHEEL_NAME.match(path.name)
        if match:
            versions[match["name"].lower().replace("_", "-")] = match["version"]
    return versions


def version_tuple(version: str) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def abi_constraints(versions: Dict[str, str]) -> List[str]:
    """Extra pins that the resolver does not know: onnxruntime < 1.19 was built against numpy 1.x."""
    ort, numpy = versions.get("onnxruntime"), versions.get("numpy")
    if ort and numpy and version_tuple(ort) < (1, 19) and version_tuple(numpy) >= (2,):
        return ["numpy<2"]
    return []


def collect_wheels(
    dest: Path,
    source_dir: Path,
    python_version: str,
    platforms: Sequence[str],
    find_links: Sequence[Path] = (),
    offline: bool = False,
    constraints: Sequence[str] = (),
) -> Dict[str, str]:
    """Fill `dest` with the zsclip wheel, pip, and every runtime dependency; returns name -> version."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zsclip-wheel-") as tmp:
        own = build_zsclip_wheel(source_dir, Path(tmp))
        shutil.copy2(own, dest / own.name)
    requirements = [str(dest / own.name), "pip"]
    links = [dest, *find_links]
    download_wheels(requirements, dest, python_version, platforms, links, offline, constraints)
    extra = abi_constraints(wheel_versions(dest))
    if extra:
        logger.info("re-resolving with %s", extra)
        for path in dest.glob("*.whl"):
            if path.name != own.name:
                path.unlink()
        download_wheels(requirements, dest, python_version, platforms, links, offline, [*constraints, *extra])
    return wheel_versions(dest)


def check_target(python_version: str, platforms: Sequence[str]) -> Optional[str]:
    """A reason the target is malformed, or None."""
    if not re.fullmatch(r"3\.\d{1,2}", python_version):
        return f"--python must look like 3.11, got {python_version!r}"
    if not platforms:
        return "at least one --platform is needed"
    return None
