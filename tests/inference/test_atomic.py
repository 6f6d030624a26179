import os
from pathlib import Path

import pytest
from zsclip.atomic import atomic_dir, atomic_open, build_prefix, current_umask
from zsclip.errors import InputDataError


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


def test_atomic_dir_replaces_an_existing_folder_only_on_success(tmp_path: Path, umask_027) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as work:
        assert work.parent == tmp_path and work != target and not any(work.iterdir())
        assert (target / "old.txt").read_text() == "old"  # untouched while building
        (work / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert target.stat().st_mode & 0o777 == 0o750  # a plain mkdir's permissions, not mkdtemp's 0700
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no build or swapped-out folder left


@pytest.mark.parametrize("existing", [False, True])
def test_atomic_dir_failure_leaves_the_target_as_it_was(tmp_path: Path, existing: bool) -> None:
    target = tmp_path / "model"
    if existing:
        target.mkdir()
        (target / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as work:
        (work / "half.txt").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == (["model"] if existing else [])
    if existing:
        assert [p.name for p in target.iterdir()] == ["old.txt"]


def test_atomic_dir_in_an_unwritable_place_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputDataError, match="cannot write in"), atomic_dir(tmp_path / "file" / "model"):
        pass


def test_atomic_dir_with_a_fixed_build_name_clears_a_killed_run_s_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "step-00000010"
    for leftover in ("step-00000010.tmp", "step-00000010.tmp.old"):  # what kill -9 mid-build / mid-swap leaves
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "state.pt").write_text("stale")
    with atomic_dir(target, build_name="step-00000010.tmp") as work:
        assert work == tmp_path / "step-00000010.tmp" and not any(work.iterdir())
        (work / "state.pt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000010"]
    assert (target / "state.pt").read_text() == "new"


def test_atomic_dir_removes_build_folders_of_dead_processes_only(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    target = tmp_path / "model"
    killed = tmp_path / (build_prefix(target, int(dead.stdout)) + "abcd1234")  # what kill -9 left
    killed.mkdir()
    (killed.with_name(killed.name + ".old")).mkdir()
    running = tmp_path / (build_prefix(target, os.getpid()) + "efgh5678")  # another build of a live process
    running.mkdir()
    other_host = tmp_path / ".model.tmp-elsewhere-1-ijkl9012"
    other_host.mkdir()
    with atomic_dir(target) as work:
        assert work.name.startswith(build_prefix(target, os.getpid()))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", running.name, other_host.name])
