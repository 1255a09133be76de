"""Shared by the benchmarks: machine load next to every figure, peak memory, child processes,
JSON results under ``benchmarks/results/``.

Timings on a shared machine are noisy: every result records the load average before and after,
and ratios are always measured side by side in one run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def machine_load() -> dict[str, Any]:
    """Load averages (1/5/15 min) and the ``uptime`` line, as the reader of a figure needs them."""
    one, five, fifteen = os.getloadavg()
    try:
        uptime = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        uptime = ""
    return {
        "loadavg": [round(one, 2), round(five, 2), round(fifteen, 2)],
        "uptime": uptime.strip(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def machine() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def rss_mb() -> float:
    """Current resident memory (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def run_child(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run ``python ARGS`` in a fresh process (its own peak memory) and parse the JSON object it
    prints on its last stdout line; its stderr passes through (progress)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{' '.join(args)} failed (exit {proc.returncode}): {proc.stdout[-2000:]}"
        )
    return json.loads(lines[-1])


def save(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``result`` to ``out`` (default ``benchmarks/results/<name>.json``) and return it."""
    from safelrm.io import write_json

    path = out or RESULTS / f"{name}.json"
    write_json(path, result)
    return path


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    return f"{'meets' if ok else 'misses'} target {sign} {target}"
