"""What the README's quickstart writes into the checkout is ignored by git (before: an untracked `sample/`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", ["sample/gt.json", "sample/datasets/sample/img/05_astronaut.jpg", "out.json"])
def test_quickstart_outputs_are_ignored(path: str) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path], timeout=30)
    assert proc.returncode == 0, f"{path} is not ignored by .gitignore"
