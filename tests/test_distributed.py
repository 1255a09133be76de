"""Training under a real 2-process launch (CPU, gloo) matches one process with the same global
batch: the same loss curve and the same merged weights; only the main process writes outputs.

One launch runs both SFT and DPO (`python -m safelrm.train.distributed check`) to pay the
process start-up once. Dropout is 0 and the seed fixed, so the runs must agree to float precision.
"""

import json
import os
import random
import subprocess
from pathlib import Path

import pytest
import torch
from launching import launch_2cpu
from safetensors.torch import load_file

from safelrm.train import DPOSettings, SFTSettings, train_dpo, train_sft

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3  # 8 rows at global batch 4: the third step is in the second (reshuffled) epoch
COMMON = {"max_steps": STEPS, "learning_rate": 0.01, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
WORDS = "the a to of and is how can i make safe think answer step first then so help sorry".split()


@pytest.fixture(autouse=True)
def one_thread():
    """The 1-process reference runs in this process: one thread keeps a tiny model from stalling
    on a busy 2-core machine (threads spinning against other work)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def phrase(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def make_rows() -> tuple[list[dict], list[dict]]:
    """8 rows of different lengths, so per-process token counts differ (the case where averaging
    per-process mean losses would go wrong)."""
    rng = random.Random(1)
    sft, dpo = [], []
    for _ in range(8):
        prompt = [{"role": "user", "content": phrase(rng, 3, 12)}]
        a, b = phrase(rng, 4, 30), phrase(rng, 4, 30)
        sft.append({"prompt": prompt, "completion": f"<think>\n{a}\n</think>\n\n{b}"})
        dpo.append(
            {
                "prompt": prompt,
                "chosen": f"<think>\n{a}\n</think>\n\nsorry",
                "rejected": f"<think>\n{b}\n</think>\n\n{a}",
            }
        )
    return sft, dpo


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def launched(tiny_model_dir, tmp_path_factory):
    """Both trainings of one 2-process launch, per-device batch 2."""
    work = tmp_path_factory.mktemp("dist")
    sft_rows, dpo_rows = make_rows()
    cmd = [
        *launch_2cpu(),
        "-m",
        "safelrm.train.distributed",
        "check",
        "--model",
        str(tiny_model_dir),
        "--sft-data",
        str(write_jsonl(work / "sft.jsonl", sft_rows)),
        "--dpo-data",
        str(write_jsonl(work / "dpo.jsonl", dpo_rows)),
        "--out",
        str(work / "two"),
        "--set",
        "per_device_train_batch_size=2",
        "--set",
        f"max_steps={STEPS}",
        "--set",
        f"learning_rate={COMMON['learning_rate']}",
        "--set",
        "lora.r=8",
        "--set",
        "lora.dropout=0",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return work / "two", sft_rows, dpo_rows


def merged_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def assert_same_run(two: Path, one, kind: str) -> None:
    summary = json.loads((two / "distributed.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 4
    assert summary["steps"] == STEPS == one.steps
    log = json.loads((two / "train_log.json").read_text())
    assert log["world_size"] == 2 and log["distributed_type"] == "MULTI_CPU"
    assert one.loss_history[0] != pytest.approx(one.loss_history[-1], abs=1e-3), "no learning"
    assert summary["loss_history"] == pytest.approx(one.loss_history, rel=1e-4, abs=1e-6), kind
    a, b = merged_weights(two / "merged"), merged_weights(one.merged_dir)
    assert a.keys() == b.keys()
    for name in a:
        # all-reduce sums in another order; Adam turns that noise into ~1e-5 on a few weights,
        # three orders below one step's update (learning rate 1e-2)
        torch.testing.assert_close(a[name], b[name], atol=5e-5, rtol=1e-4)
    # only the finished outputs, written once: no temp folders or checkpoints from either rank
    assert sorted(p.name for p in two.iterdir()) == [
        "adapter",
        "distributed.json",
        "logs",
        "merged",
        "train_log.json",
    ]


def test_sft_two_processes_match_one_process_same_global_batch(launched, tiny_model_dir, tmp_path):
    two, sft_rows, _ = launched
    one = train_sft(
        tiny_model_dir,
        None,
        sft_rows,
        SFTSettings(per_device_train_batch_size=4, **COMMON),
        tmp_path / "one",
        progress=False,
    )
    assert_same_run(two / "sft", one, "sft")

    # The comparison is sharp enough to see a different global batch (2 instead of 4).
    half = train_sft(
        tiny_model_dir,
        None,
        sft_rows,
        SFTSettings(per_device_train_batch_size=2, **COMMON),
        tmp_path / "half",
        progress=False,
    )
    two_losses = json.loads((two / "sft" / "distributed.json").read_text())["loss_history"]
    assert two_losses != pytest.approx(half.loss_history, rel=1e-4, abs=1e-6)


def test_dpo_two_processes_match_one_process_same_global_batch(launched, tiny_model_dir, tmp_path):
    two, _, dpo_rows = launched
    one = train_dpo(
        tiny_model_dir,
        None,
        dpo_rows,
        DPOSettings(per_device_train_batch_size=4, **COMMON),
        tmp_path / "one",
        progress=False,
    )
    assert_same_run(two / "dpo", one, "dpo")
