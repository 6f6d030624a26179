"""Print how many CPUs this process may really use: the affinity mask, capped by any cgroup CPU quota.

os.cpu_count() is the host's core count; in a container limited to one CPU it can say 64.
"""

import math
import os


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def read_quota(quota_text: str, period_text: str):
    if quota_text in ("max", "-1") or not period_text:
        return None
    quota, period = int(quota_text), int(period_text)
    return quota / period if quota > 0 and period > 0 else None


def cgroup_paths():
    """Our cgroup folders (v2 unified, and v1 cpu controller), deepest first, then their ancestors."""
    try:
        with open("/proc/self/cgroup") as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].strip("/")
        roots = ["/sys/fs/cgroup"] if controllers == "" else [
            "/sys/fs/cgroup/" + c for c in ("cpu", "cpu,cpuacct", "cpuacct,cpu") if "cpu" in controllers.split(",")
        ]
        for root in roots:
            parts_path = path.split("/") if path else []
            for depth in range(len(parts_path), -1, -1):
                yield os.path.join(root, *parts_path[:depth])


def cgroup_cpus():
    """The smallest CPU quota of our cgroups and their ancestors (v2 cpu.max, v1 cfs_quota_us)."""
    limits = []
    for folder in list(cgroup_paths()) + ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu"]:
        try:
            with open(os.path.join(folder, "cpu.max")) as handle:
                fields = handle.read().split()
            limits.append(read_quota(fields[0], fields[1] if len(fields) > 1 else "100000"))
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(os.path.join(folder, "cpu.cfs_quota_us")) as handle:
                quota = handle.read().strip()
            with open(os.path.join(folder, "cpu.cfs_period_us")) as handle:
                period = handle.read().strip()
            limits.append(read_quota(quota, period))
        except (OSError, ValueError):
            pass
    limits = [x for x in limits if x]
    return min(limits) if limits else None


def available_cpus() -> int:
    cpus = affinity_cpus()
    quota = cgroup_cpus()
    if quota:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


if __name__ == "__main__":
    print(available_cpus())
