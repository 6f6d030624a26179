import os
from pathlib import Path

import pytest
from zsclip.atomic import atomic_open, current_umask


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_result_has_plain_open_permissions(tmp_path: Path, umask_027) -> None:
    assert current_umask() == 0o027
    with atomic_open(tmp_path / "out.json", "w", encoding="utf-8") as handle:
        handle.write("{}")
    assert (tmp_path / "out.json").read_text() == "{}"
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failure_keeps_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
