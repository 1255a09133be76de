"""vLLM on a CPU for tests and smoke runs: engine options and a ``vllm serve`` process that is
always stopped.

On the CPU build ``gpu_memory_utilization`` is the share of *system RAM* vLLM reserves for its KV
cache (and it refuses to start when less is free); a small share keeps room for other work.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

KV_CACHE_BYTES = 512 * 2**20
MAX_MODEL_LEN = 2048
VLLM_CPU_OPTIONS = {
    "dtype": "float32",  # as the hf backend on CPU: parity needs the same precision
    "max_model_len": MAX_MODEL_LEN,
    "kv_cache_memory_bytes": KV_CACHE_BYTES,
    "enforce_eager": True,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def vllm_server(model: str, log: Path, timeout: float = 600.0) -> Iterator[str]:
    """``vllm serve MODEL`` on 127.0.0.1 and a free port, from this interpreter's environment;
    yields its base url (``http://127.0.0.1:PORT/v1``) once it answers, and stops the whole
    process group on exit, failure or not. The server's output goes to ``log``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cmd = [
        *_serve_command(), model,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", VLLM_CPU_OPTIONS["dtype"], "--max-model-len", str(MAX_MODEL_LEN),
        "--kv-cache-memory-bytes", str(KV_CACHE_BYTES), "--enforce-eager", "--seed", "0",
    ]  # fmt: skip
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"vllm serve exited with {proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"vllm serve did not answer within {timeout:.0f} s (log: {log})")
            time.sleep(1.0)
        yield url
    finally:
        _stop(proc)


def _serve_command() -> list[str]:
    """``vllm serve``; vllm-cpu's ``vllm`` command looks up the distribution ``vllm`` (it is
    ``vllm-cpu``) and exits, so there the same server runs from its module entry point."""
    try:
        importlib.metadata.version("vllm")
        return [str(Path(sys.executable).parent / "vllm"), "serve"]
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model"]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the API server and its engine process), then
    SIGKILL if it has not ended within 30 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    try:  # engine processes left behind in the group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
