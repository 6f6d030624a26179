"""A bad option value is a usage error on every CLI: exit 2, the `--flag` named, never the config field behind it.

Before: the config dataclass's ConfigError surfaced as `error: batch_size must be >= 1, got 0` with exit 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import pytest
from click.testing import CliRunner


def predict(tmp: Path) -> List[str]:
    return [str(tmp), str(tmp / "out.json")]


def embed(tmp: Path) -> List[str]:
    return [str(tmp), "--out", str(tmp / "e.npz")]


def label(tmp: Path) -> List[str]:
    return [str(tmp), "--classes", str(tmp / "classes.json"), "--out", str(tmp / "l.csv")]


def none(tmp: Path) -> List[str]:
    return []


CASES = [  # (module, command, base args, option, value, the config field the option fills)
    ("zsclip.cli", "predict_main", predict, "--batch-size", "0", "batch_size"),
    ("zsclip.cli", "predict_main", predict, "--prior-correction", "2", "prior_correction"),
    ("zsclip.cli", "predict_main", predict, "--decode-workers", "-3", "decode_workers"),
    ("zsclip.cli", "embed_main", embed, "--threads", "-1", "threads"),
    ("zsclip.cli", "label_main", label, "--batch-size", "0", "batch_size"),
    ("zsclip_bench.cli", "main", none, "--repeats", "0", "repeats"),
    ("zsclip_bench.cli", "main", none, "--pass-fraction", "1.5", "pass_fraction"),
    ("zsclip_bench.cli", "main", none, "--threads", "two", "threads"),
    ("zsclip_bundle.cli", "main", lambda tmp: ["--model", str(tmp)], "--max-size-mb", "0", "max_size_mb"),
    ("zsclip_export.cli", "main", lambda tmp: ["--out", str(tmp / "m")], "--min-agreement", "1.5", "min_agreement"),
    ("zsclip_export.cli", "main", lambda tmp: ["--out", str(tmp / "m")], "--max-check-images", "0", "max_check_images"),
    ("zsclip_export.cli", "main", lambda tmp: ["--out", str(tmp / "m")], "--calib-images", "nope", "calibration_images"),
    ("zsclip_train.cli", "main", lambda tmp: ["probe", "--data", str(tmp), "--out", str(tmp / "p")], "--threads", "0",
     "threads"),
    ("zsclip_train.cli", "main", lambda tmp: ["download", "--images", "x", "--out", str(tmp / "s")], "--min-side", "2",
     "min_side"),
    ("zsclip_train.cli", "main", lambda tmp: ["prepare", "--metadata", "m", "--shards", "s", "--out", str(tmp / "p")],
     "--vocab-size", "3", "vocab_size"),
]


@pytest.mark.parametrize("module, command, base, option, value, field", CASES,
                         ids=[f"{c[0].split('.')[0]}{c[3]}" for c in CASES])
def test_bad_option_value_names_the_flag_and_exits_2(module: str, command: str, base: Callable[[Path], List[str]],
                                                     option: str, value: str, field: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if module == "zsclip_export.cli":
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)  # "nope" and friends are relative to here
    main = getattr(pytest.importorskip(module), command)
    result = CliRunner().invoke(main, [*base(tmp_path), option, value])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: Invalid value for '{option}': "), result.output
    assert field not in result.output.replace(option, "") and "Traceback" not in result.output, result.output


def test_a_config_error_no_option_fills_stays_exit_1(tmp_path: Path) -> None:
    """A ConfigError naming a field the command has no option for is an ordinary user error."""
    import click
    from zsclip.cli import run_guarded
    from zsclip.errors import ConfigError

    @click.command()
    @run_guarded
    def cmd() -> None:
        raise ConfigError.for_field("chunk_images", "must be >= 1, got 0")

    result = CliRunner().invoke(cmd, [])
    assert result.exit_code == 1 and result.output == "error: chunk_images must be >= 1, got 0\n"
