"""`zsclip-bench` through click: help, config errors as one line + exit 1, one real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from zsclip.errors import ConfigError
from zsclip_bench.cli import main, parse_threads
from zsclip_bench.config import BenchConfig


def test_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "--baseline" in result.output


def test_parse_threads() -> None:
    assert parse_threads("1, 2,1") == (1, 2)
    assert parse_threads("all")[0] >= 1
    for bad in ("0", "x", "1,,2"):
        with pytest.raises(ConfigError):
            parse_threads(bad)


@pytest.mark.parametrize("kwargs", [
    {"model_dirs": ()}, {"threads": (0,)}, {"repeats": 0}, {"baseline": "tf"}, {"pass_fraction": 1.5},
    {"variants": ("torch",)}, {"synthetic": 0}, {"threads": (1, 1)}, {"variants": ("fp32", "fp32")},
])
def test_config_validation(kwargs: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        BenchConfig(**{"model_dirs": (tmp_path,), **kwargs})


def test_user_errors_are_one_line(tmp_path: Path, data_dir: tuple) -> None:
    runner = CliRunner()
    both = runner.invoke(main, ["--model", str(tmp_path), "--data", str(data_dir[0]), "--synthetic", "5"])
    assert both.exit_code == 2 and "not both" in both.output
    missing = runner.invoke(main, ["--model", str(tmp_path / "nope"), "--synthetic", "5"])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1 and "does not exist" in missing.output


def test_end_to_end(tiny_model_dir: Path, data_dir: tuple, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, [
        "--model", str(tiny_model_dir), "--data", str(data_dir[0]), "--variant", "int8", "--threads", "1",
        "--repeats", "1", "--json", str(out), "-q",
    ])
    assert result.exit_code == 0, result.output
    assert "| tiny-rgb | int8 | 1 |" in result.output
    assert json.loads(out.read_text(encoding="utf-8"))["results"][0]["variant"] == "int8"


def test_synthetic_zero_is_an_error_not_the_default(tiny_model_dir: Path) -> None:
    result = CliRunner().invoke(main, ["--model", str(tiny_model_dir), "--synthetic", "0"])
    assert result.exit_code == 2 and "Invalid value for '--synthetic': (image count) must be >= 1, got 0" in result.output


@pytest.mark.parametrize("option", ["--json", "--chart"])
def test_unwritable_outputs_fail_before_measuring(option: str, tiny_model_dir: Path, data_dir: tuple,
                                                  tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "out"
    result = CliRunner().invoke(main, [
        "--model", str(tiny_model_dir), "--data", str(data_dir[0]), "--threads", "1", "--repeats", "1",
        option, str(target),
    ])
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: ") and "[1/" not in result.output
    assert str(target.parent) in result.output


def test_chart_write_failure_is_a_user_error(tmp_path: Path) -> None:
    from zsclip.errors import InputDataError
    from zsclip_bench.chart import render_chart

    with pytest.raises(InputDataError, match="cannot write the chart"):
        render_chart({"results": []}, tmp_path)


def test_progress_line_per_run_with_eta(tiny_model_dir: Path, data_dir: tuple) -> None:
    """Every measured run prints a line (also when stderr is a log file), with the share done and an ETA."""
    result = CliRunner().invoke(main, ["--model", str(tiny_model_dir), "--data", str(data_dir[0]), "--variant", "int8",
                                       "--threads", "1", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert len(lines) == 2, result.output
    assert lines[0].startswith("[1/2] int8 t1 ") and ": 50%, ETA " in lines[0], result.output
    assert lines[1].startswith("[2/2] int8 t1 ") and lines[1].endswith(" s") and ": 100%, " in lines[1], result.output


def test_heartbeat_lines_between_runs_when_stderr_is_not_a_terminal(tiny_model_dir: Path, data_dir: tuple,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run is a fresh process of 10-60 s on real data: in a log file a line comes every few seconds meanwhile."""
    from zsclip import progress

    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.05)
    result = CliRunner().invoke(main, ["--model", str(tiny_model_dir), "--data", str(data_dir[0]), "--variant", "int8",
                                       "--threads", "1", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    beats = [line for line in result.output.splitlines() if line.startswith("benchmarking: ")]
    assert any(line.startswith("benchmarking: first run, ") and line.endswith(" so far") for line in beats), result.output
    assert any(line.startswith("benchmarking: 1/2 runs, ETA ") for line in beats), result.output
    quiet = CliRunner().invoke(main, ["--model", str(tiny_model_dir), "--data", str(data_dir[0]), "--variant", "int8",
                                      "--threads", "1", "--repeats", "1", "-q"])
    assert quiet.exit_code == 0 and "benchmarking" not in quiet.output
