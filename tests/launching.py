"""The 2-process CPU launch (gloo) that the multi-process tests share."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "accelerate" / "cpu_2proc_gloo.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_2cpu() -> list[str]:
    """``accelerate launch`` with 2 CPU processes on a free port; append the script and args."""
    script = Path(sys.executable).parent / "accelerate"
    launcher = [str(script), "launch"] if script.exists() else ["accelerate", "launch"]
    return [*launcher, "--config_file", str(CONFIG), "--main_process_port", str(free_port())]
