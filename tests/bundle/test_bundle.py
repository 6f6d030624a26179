"""The contest bundle end to end: build, unpack, fresh venv, offline setup.sh, predict.sh, strict check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE_SRC = REPO / "contest_bundle"
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"


def clean_env(**extra: str) -> dict:
    """This process's environment without the dev venv, with pip barred from any index."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_NO_INDEX="1", PIP_INDEX_URL="http://127.0.0.1:9/nowhere", **extra)
    return env


def run_builder(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(BUNDLE_SRC), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "zsclip_bundle.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=900)


def unpack(archive: Path, dest: Path) -> Path:
    """Extract like `unzip` does, exec bits included (zipfile alone drops them)."""
    with zipfile.ZipFile(archive) as handle:
        for info in handle.infolist():
            path = Path(handle.extract(info, dest))
            mode = info.external_attr >> 16
            if mode:
                path.chmod(mode & 0o777)
    return dest


@pytest.fixture(scope="module")
def built_bundle(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("bundle") / "submission.zip"
    result = run_builder("--model", tiny_model_dir, "--out", out, "--python", PYTHON)
    if result.returncode != 0 and "downloading wheels" in result.stderr and "connect" in result.stderr.lower():
        pytest.skip(f"no package index reachable: {result.stderr.strip()[-300:]}")
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.slow
def test_bundle_layout_and_size_report(built_bundle: tuple) -> None:
    archive, stdout = built_bundle
    with zipfile.ZipFile(archive) as handle:
        names = set(handle.namelist())
        info = json.loads(handle.read("bundle.json"))
        modes = {i.filename: i.external_attr >> 16 for i in handle.infolist()}
    assert {"setup.sh", "predict.sh", "model/zsclip.json", "bundle.json"} <= names
    assert modes["setup.sh"] & 0o111 and modes["predict.sh"] & 0o111
    wheels = {n.split("/")[1].split("-")[0].lower() for n in names if n.startswith("wheels/")}
    assert {"zsclip", "onnxruntime", "numpy", "pillow", "tokenizers", "click", "pip"} <= wheels
    assert not wheels & {"torch", "onnx", "transformers", "optimum"}
    assert info["python"] == PYTHON and info["wheels"]["zsclip"]
    assert "total" in stdout and "wheels/onnxruntime" in stdout


@pytest.mark.slow
def test_bundle_installs_offline_and_predicts_strictly(built_bundle: tuple, tmp_path: Path) -> None:
    from conftest import make_data_dir
    from zsclip.evaluate import check_strict

    archive, _ = built_bundle
    root = unpack(archive, tmp_path / "unpacked")
    env = clean_env(PYTHON=sys.executable)
    setup = subprocess.run(["bash", str(root / "setup.sh")], capture_output=True, text=True, env=env, timeout=600)
    assert setup.returncode == 0, setup.stderr + setup.stdout
    assert "zsclip bundle ready" in setup.stdout
    assert (root / ".venv" / "bin" / "python").exists()

    data_dir, gt = make_data_dir(tmp_path / "data")
    out = tmp_path / "OUT.json"
    predict = subprocess.run([str(root / "predict.sh"), str(data_dir), str(out)], capture_output=True, text=True,
                             env=clean_env(), timeout=300)
    assert predict.returncode == 0, predict.stderr
    prediction = json.loads(out.read_text(encoding="utf-8"))
    check_strict(gt, prediction, {"colours": 3})
    assert prediction == gt  # the tiny model is exact on colours

    usage = subprocess.run([str(root / "predict.sh")], capture_output=True, text=True, env=clean_env())
    assert usage.returncode == 2 and "usage" in usage.stderr
    missing = subprocess.run([str(root / "predict.sh"), str(tmp_path / "nope"), str(out)], capture_output=True,
                             text=True, env=clean_env())
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


@pytest.mark.slow
def test_bundle_without_venv_module_installs_into_site(built_bundle: tuple, tmp_path: Path) -> None:
    """A Python that cannot make a venv and has packages of its own (this dev venv): ./site wins."""
    archive, _ = built_bundle
    root = unpack(archive, tmp_path / "unpacked")
    wrapper = tmp_path / "python"
    wrapper.write_text(
        f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "venv" ]; then exit 1; fi\nexec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = clean_env(PYTHON=str(wrapper))
    setup = subprocess.run(["bash", str(root / "setup.sh")], capture_output=True, text=True, env=env, timeout=600)
    assert setup.returncode == 0, setup.stderr + setup.stdout
    assert (root / "site" / "zsclip").is_dir() and not (root / ".venv").exists()
    bundled = json.loads((root / "bundle.json").read_text())["wheels"]
    assert f"onnxruntime {bundled['onnxruntime']}" in setup.stdout  # the bundled one, not the dev venv's

    from conftest import make_data_dir

    data_dir, gt = make_data_dir(tmp_path / "data")
    out = tmp_path / "OUT.json"
    predict = subprocess.run([str(root / "predict.sh"), str(data_dir), str(out)], capture_output=True, text=True,
                             env=env, timeout=300)
    assert predict.returncode == 0, predict.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == gt


@pytest.mark.slow
def test_bundle_over_the_size_limit_fails(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "submission.zip"
    result = run_builder("--model", tiny_model_dir, "--out", out, "--max-size-mb", "1")
    assert result.returncode == 1
    assert "over the 1 MB limit" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_bundle_refuses_a_bad_model_dir_before_downloading(tmp_path: Path) -> None:
    result = run_builder("--model", tmp_path / "no_model", "--out", tmp_path / "s.zip", "--offline")
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "no_model" in result.stderr and "Traceback" not in result.stderr


def test_bundle_refuses_a_directory_as_out_before_downloading(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zsclip_bundle.build as build
    from zsclip.errors import InputDataError

    def no_download(*args: object) -> None:
        raise AssertionError("wheels were collected before the output path was checked")

    monkeypatch.setattr(build, "collect_wheels", no_download)
    with pytest.raises(InputDataError, match="is a directory"):
        build.build_bundle(build.BundleConfig(model_dir=tiny_model_dir, out_path=tmp_path, offline=True))


def test_builder_help_is_instant() -> None:
    result = run_builder("--help")
    assert result.returncode == 0 and "--platform" in result.stdout
