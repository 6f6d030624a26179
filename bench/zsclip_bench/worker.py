"""Run one `Job` in a fresh interpreter, so each configuration gets its own cold start and peak RSS.

Protocol: the parent writes the job as JSON to stdin; the child prints one JSON object to stdout,
either the result of `run_job` or `{"error": message, "error_type": name}` (exit code 1).
Thread-count environment variables are set for the child only (BLAS pools used by numpy scoring).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Dict, Optional

from zsclip import errors

from zsclip_bench.job import Job

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def run_job_in_subprocess(job: Job, timeout: Optional[float] = None) -> Dict:
    """The child's result plus `process_wall_s` (interpreter start to exit, as the parent saw it).

    Raises:
        ZsclipError: of the type the child raised (bad model dir, missing baseline hook, ...).
        RuntimeError: the child crashed (a bug; its stderr tail is in the message).
    """
    env = dict(os.environ, **{name: str(job.threads) for name in THREAD_ENV})
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "zsclip_bench.worker"],
        input=json.dumps(asdict(job)), capture_output=True, text=True, env=env, timeout=timeout,
    )
    wall = time.perf_counter() - started
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"bench worker crashed (exit {proc.returncode}) on {job}:\n{tail}") from None
    if "error" in result:
        error_type = getattr(errors, str(result.get("error_type")), errors.ZsclipError)
        raise error_type(result["error"])
    result["process_wall_s"] = wall
    return result


def main() -> None:
    started = time.perf_counter()
    job = Job(**json.loads(sys.stdin.read()))
    from zsclip_bench.stages import run_job  # imports onnxruntime: charged to cold start as `import`

    imported = time.perf_counter() - started
    try:
        result = run_job(job)
    except errors.ZsclipError as exc:
        print(json.dumps({"error": str(exc), "error_type": type(exc).__name__}, ensure_ascii=False))
        sys.exit(1)
    result["cold"] = {"import": imported, **result["cold"]}
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
