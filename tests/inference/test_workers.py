"""CPUs a process may use: affinity mask capped by cgroup quotas (v1 and v2), and the CLI entry predict.sh runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from zsclip.workers import affinity_cpus, available_cpus, cgroup_quota, read_quota


def test_read_quota():
    assert read_quota("max", "100000") is None
    assert read_quota("-1", "100000") is None
    assert read_quota("150000", "100000") == 1.5
    assert read_quota("0", "100000") is None


def fake_cgroups(tmp_path: Path, proc_line: str, files: dict) -> tuple:
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_line + "\n")
    fs = tmp_path / "cgroup"
    for rel, text in files.items():
        (fs / rel).parent.mkdir(parents=True, exist_ok=True)
        (fs / rel).write_text(text)
    return proc, fs


def test_v2_quota_of_an_ancestor_caps_the_cpus(tmp_path):
    proc, fs = fake_cgroups(tmp_path, "0::/box/job", {"box/cpu.max": "100000 100000", "box/job/cpu.max": "max 100000"})
    assert cgroup_quota(proc, fs) == 1.0
    assert available_cpus(proc, fs) == 1


def test_v1_quota_is_read_too(tmp_path):
    proc, fs = fake_cgroups(tmp_path, "4:cpu,cpuacct:/job",
                            {"cpu,cpuacct/job/cpu.cfs_quota_us": "50000", "cpu,cpuacct/job/cpu.cfs_period_us": "100000"})
    assert cgroup_quota(proc, fs) == 0.5
    assert available_cpus(proc, fs) == 1  # never below one


def test_no_quota_means_the_affinity_mask(tmp_path):
    proc, fs = fake_cgroups(tmp_path, "0::/", {"cpu.max": "max 100000"})
    assert cgroup_quota(proc, fs) is None
    assert available_cpus(proc, fs) == affinity_cpus()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_module_entry_follows_the_affinity_mask():
    code = "import os, runpy; os.sched_setaffinity(0, {0}); runpy.run_module('zsclip.workers', run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"
    result = subprocess.run([sys.executable, "-m", "zsclip.workers"], capture_output=True, text=True, check=True)
    assert 1 <= int(result.stdout) <= len(os.sched_getaffinity(0))
