"""`safelrm generate` under a real 2-process launch: each process generates its own shard, the main
process merges, and the run folder ends with exactly one record per key.

The shards are deliberately unequal (1 prompt vs 12): the main process finishes its shard first
and must wait for the other one before merging.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from launching import launch_2cpu

from safelrm.models.shards import shard_of, shard_path

ROOT = Path(__file__).resolve().parents[1]


def keys_of(path: Path) -> list[str]:
    return [json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()]


def test_two_process_generate_runs_both_shards_and_main_merges(tiny_model_dir, tmp_path):
    candidates = [f"q{i}" for i in range(200)]
    ids = [i for i in candidates if shard_of(i, 2) == 0][:1]
    ids += [i for i in candidates if shard_of(i, 2) == 1][:12]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"id": i, "prompt": f"say {i} please"}) + "\n" for i in ids)
    )
    out = tmp_path / "run"
    bin_dir = Path(sys.executable).parent
    cmd = [*launch_2cpu(), str(bin_dir / "safelrm"), "generate", "--model", str(tiny_model_dir)]
    cmd += ["--prompts", str(prompts), "--out", str(out), "--show", "0", "--n", "2"]
    cmd += ["--temperature", "0.8", "--max-new-tokens", "16", "--max-reasoning-tokens", "16"]
    cmd += ["--batch-size", "4"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    expected = [f"{i}#{s}" for i in ids for s in range(2)]
    shards = [keys_of(shard_path(out, 2, k)) for k in range(2)]
    for k, keys in enumerate(shards):
        assert keys, f"shard {k} generated nothing"
        assert all(shard_of(key.split("#")[0], 2) == k for key in keys), f"shard {k} strayed"
    assert sorted(shards[0] + shards[1]) == sorted(expected)  # disjoint and complete
    merged = keys_of(out / "records.jsonl")
    assert merged == expected  # exactly one record per key, in prompt order
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
