"""Fault case: a training run killed with SIGKILL mid-run, then rerun, resumes from its last
checkpoint and ends where an uninterrupted run ends (loss curve and adapter weights), both for
`safelrm train sft` and for a training stage of a recipe (`safelrm run`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from safelrm.io import write_jsonl
from safelrm.train import SFTSettings, train_sft

LAUNCH = Path(__file__).with_name("train_launch.py")
ROWS = [
    {
        "prompt": f"question {i}: what is {i} plus {i}?",
        "completion": f"<think>\nadd\n</think>\n\n{2 * i}",
    }
    for i in range(8)
]
# 8 rows, batch 2: 4 steps per epoch, 12 steps = 3 epochs; a checkpoint every 3 steps. LoRA
# dropout on, so that the resumed run must also restore the random state to match.
SETTINGS = {
    "max_steps": 12,
    "learning_rate": 1e-2,
    "per_device_train_batch_size": 2,
    "max_length": 64,
    "save_steps": 3,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
}
KILL_AFTER = "checkpoint-6"


def launch(args: list[str], sleep: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if sleep:
        env["SAFELRM_TEST_STEP_SLEEP"] = str(sleep)
    return subprocess.Popen(
        [sys.executable, str(LAUNCH), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def kill_after_checkpoint(proc: subprocess.Popen, ckpt_dir: Path) -> None:
    """SIGKILL once ``ckpt_dir/checkpoint-6`` is complete (its trainer_state.json written)."""
    deadline = time.monotonic() + 300
    while not (ckpt_dir / KILL_AFTER / "trainer_state.json").is_file():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def losses(train_dir: Path) -> list[float]:
    return [e["loss"] for e in json.loads((train_dir / "train_log.json").read_text())["log"]]


def assert_same_training(resumed: Path, reference: Path) -> None:
    log = json.loads((resumed / "train_log.json").read_text())
    assert log["steps"] == 12 and log["resumed_from"].endswith(("checkpoint-6", "checkpoint-9"))
    assert losses(resumed) == pytest.approx(losses(reference), abs=1e-4)
    a = load_file(resumed / "adapter" / "adapter_model.safetensors")
    b = load_file(reference / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-4, k
    assert not (resumed / "checkpoints").exists()  # resume state is removed once exported


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    write_jsonl(path, ROWS)
    return path


@pytest.fixture(scope="module")
def reference(tiny_model_dir, rows_file, tmp_path_factory) -> Path:
    """An uninterrupted `safelrm train sft` run (checkpoints on)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    config = out.parent / "sft.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    finish(launch(cli_args(tiny_model_dir, rows_file, config, out)))
    return out


def cli_args(model: Path, rows: Path, config: Path, out: Path, *extra: str) -> list[str]:
    return [
        "cli",
        "train",
        "sft",
        "-m",
        str(model),
        "-d",
        str(rows),
        "-c",
        str(config),
        "-o",
        str(out),
        *extra,
    ]


def test_checkpoints_do_not_change_the_training(tiny_model_dir, tmp_path):
    with_ckpt = train_sft(
        tiny_model_dir, None, ROWS, SFTSettings(**SETTINGS), tmp_path / "a", False
    )
    without = SFTSettings(**SETTINGS, save_strategy="no")
    assert train_sft(tiny_model_dir, None, ROWS, without, tmp_path / "b", False).loss_history == (
        with_ckpt.loss_history
    )


def test_killed_safelrm_train_resumes_from_last_checkpoint(
    tiny_model_dir, rows_file, reference, tmp_path
):
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    out = tmp_path / "out"
    args = cli_args(tiny_model_dir, rows_file, config, out)
    kill_after_checkpoint(launch(args, sleep=0.3), out / "checkpoints")
    assert not (out / "merged").exists()
    finish(launch(args))
    assert_same_training(out, reference)


def test_changed_settings_do_not_resume_a_stale_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    """A run that crashed at step 7 left checkpoints; a rerun with another learning rate starts
    over instead of resuming them."""
    from transformers.trainer_callback import DefaultFlowCallback

    step_end = DefaultFlowCallback.on_step_end

    def crash_at_7(self, args, state, control, **kwargs):
        if state.global_step == 7:
            raise RuntimeError("crash")
        return step_end(self, args, state, control, **kwargs)

    monkeypatch.setattr(DefaultFlowCallback, "on_step_end", crash_at_7)
    with pytest.raises(RuntimeError, match="crash"):
        train_sft(tiny_model_dir, None, ROWS, SFTSettings(**SETTINGS), tmp_path, progress=False)
    assert (tmp_path / "checkpoints" / KILL_AFTER / "trainer_state.json").is_file()
    monkeypatch.setattr(DefaultFlowCallback, "on_step_end", step_end)
    changed = SFTSettings(**{**SETTINGS, "learning_rate": 5e-3})
    result = train_sft(tiny_model_dir, None, ROWS, changed, tmp_path, progress=False)
    log = json.loads(result.log_path.read_text())
    assert log["resumed_from"] is None and result.steps == 12


def test_killed_recipe_training_stage_resumes(tiny_model_dir, rows_file, reference, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    run = tmp_path / "run"
    recipe.write_text(
        yaml.safe_dump(
            {
                "method": "train_only",
                "model": str(tiny_model_dir),
                "out": str(run),
                "rows": str(rows_file),
                "sft": SETTINGS,
            }
        )
    )
    train_dir = run / "sft" / "train"
    kill_after_checkpoint(launch(["recipe", str(recipe)], sleep=0.3), train_dir / "checkpoints")
    assert json.loads((run / "sft" / "stage.json").read_text())["status"] == "running"
    out = finish(launch(["recipe", str(recipe)]))
    assert "(resuming)" in out
    assert json.loads((run / "sft" / "stage.json").read_text())["status"] == "done"
    assert_same_training(train_dir, reference)
