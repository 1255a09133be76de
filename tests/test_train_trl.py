"""TRL users' habits: a TRL script YAML trains as is with TRL's effective settings, TensorBoard
logs, datasets from files, dataset folders and hub ids, TRL row formats, loading options."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from datasets import Dataset, DatasetDict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from trl import SFTConfig
from typer.testing import CliRunner

from safelrm.errors import SafelrmError
from safelrm.io import write_jsonl
from safelrm.train import SFTSettings, train_sft
from safelrm.train.cli import app
from safelrm.train.dataset import load_rows
from safelrm.train.export import load_for_training
from safelrm.train.formats import render_dpo_rows, render_sft_rows

MESSAGES = [
    {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": f"what is {i} + {i}?"},
            {"role": "assistant", "content": f"<think>\nadd\n</think>\n\n{2 * i}"},
        ]
    }
    for i in range(6)
]
PAIRS = [
    {"prompt": f"question {i}", "chosen": "sorry, no", "rejected": f"sure, step {i}"}
    for i in range(4)
]
# The only fields where safelrm's SFTConfig differs from TRL's for that YAML: the trainer writes
# into <output_dir>/checkpoints (resume state), and completion_only_loss is True where TRL's None
# means "True for prompt-completion rows", which is what safelrm trains on.
SAFELRM_DECIDES = {"output_dir", "completion_only_loss"}

TRL_YAML = """\
# a TRL `trl sft --config` file: ModelConfig, ScriptArguments and SFTConfig keys together
model_name_or_path: {model}
dataset_name: {dataset}
dataset_train_split: train
output_dir: {out}
use_peft: true
lora_r: 8
lora_alpha: 16
lora_dropout: 0.0
lora_target_modules: [q_proj, v_proj]
attn_implementation: eager
learning_rate: 2.0e-4
num_train_epochs: 1
max_steps: 3
per_device_train_batch_size: 2
gradient_accumulation_steps: 2
gradient_checkpointing: false
lr_scheduler_type: cosine
warmup_steps: 0.1
weight_decay: 0.01
max_grad_norm: 0.5
optim: adamw_torch
adam_beta2: 0.98
max_length: 128
logging_steps: 1
seed: 7
save_steps: 2
save_total_limit: 1
report_to: tensorboard
packing: false
"""


@pytest.fixture
def hub_folder(tmp_path):
    """A dataset folder as `save_to_disk` writes it (what a hub dataset looks like locally)."""
    path = tmp_path / "dataset"
    DatasetDict({"train": Dataset.from_list(MESSAGES)}).save_to_disk(str(path))
    return path


def test_trl_yaml_trains_with_trl_settings(tiny_model_dir, hub_folder, tmp_path):
    out = tmp_path / "out"
    text = TRL_YAML.format(model=tiny_model_dir, dataset=hub_folder, out=out)
    config = tmp_path / "trl_sft.yaml"
    config.write_text(text)
    result = CliRunner().invoke(app, ["sft", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "sft: 3 steps on 6 rows" in result.output

    ours = json.loads((out / "train_log.json").read_text())["trl_config"]
    data = yaml.safe_load(text)
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    # TRL's bf16=True default does not run on a CPU: a TRL user there adds these two, safelrm
    # decides them from the device.
    direct = SFTConfig(**{k: v for k, v in data.items() if k in fields}, use_cpu=True, bf16=False)
    trl = json.loads(direct.to_json_string())
    for key in data.keys() & fields - {"output_dir"}:
        assert ours[key] == trl[key], key
    differ = {k for k in trl if ours.get(k) != trl[k]}
    # TRL's disable_tqdm=None follows the logging level of the moment; safelrm shows progress
    assert differ - {"disable_tqdm"} == SAFELRM_DECIDES, differ
    assert ours["output_dir"] == str(out / "checkpoints")
    # TRL ModelConfig keys reached the model: the adapter's targets and the attention kernel
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"] and adapter["r"] == 8
    merged = json.loads((out / "merged" / "config.json").read_text())
    assert merged.get("_attn_implementation", "eager") == "eager"

    # TensorBoard: the event file under <out>/logs holds the loss of every step
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert events, list(out.rglob("*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    logged = [round(e.value, 4) for e in acc.Scalars("train/loss")]
    steps = json.loads((out / "train_log.json").read_text())["log"]
    assert logged == [round(e["loss"], 4) for e in steps] and len(logged) == 3


def test_dpo_command_reads_csv(tiny_model_dir, tmp_path):
    path = tmp_path / "pairs.csv"
    Dataset.from_list(PAIRS).to_csv(str(path))
    args = ["dpo", "-m", str(tiny_model_dir), "--dataset", str(path), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--set", "max_steps=1", "--set", "lora.r=4"])
    assert result.exit_code == 0, result.output
    assert "dpo: 1 steps on 4 rows" in result.output
    assert list((tmp_path / "o" / "logs").rglob("events.out.tfevents.*"))


def test_dataset_sources(tmp_path, hub_folder):
    assert load_rows(hub_folder) == MESSAGES
    Dataset.from_list(MESSAGES).to_parquet(str(tmp_path / "m.parquet"))
    assert load_rows(tmp_path / "m.parquet") == MESSAGES
    write_jsonl(tmp_path / "m.jsonl", MESSAGES)
    assert load_rows(tmp_path / "m.jsonl") == MESSAGES
    files = tmp_path / "files"
    files.mkdir()
    Dataset.from_list(PAIRS).to_parquet(str(files / "train.parquet"))
    assert load_rows(files) == PAIRS  # a folder of data files, as a hub repo holds them
    flat = tmp_path / "flat"
    Dataset.from_list(PAIRS).save_to_disk(str(flat))
    assert load_rows(flat) == PAIRS
    with pytest.raises(SafelrmError, match="no split 'test'"):
        load_rows(hub_folder, split="test")
    with pytest.raises(SafelrmError, match=r"^someone/no-such-dataset: could not read") as e:
        load_rows("someone/no-such-dataset")
    assert "\n" not in str(e.value)
    with pytest.raises(SafelrmError, match="unknown file type"):
        (tmp_path / "x.txt").write_text("x")
        load_rows(tmp_path / "x.txt")


def test_trl_row_formats(tiny_model_dir):
    from safelrm.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    conversational = render_sft_rows(tok, MESSAGES[:1])
    explicit = render_sft_rows(
        tok,
        [{"prompt": MESSAGES[0]["messages"][:2], "completion": MESSAGES[0]["messages"][2:]}],
    )
    assert conversational == explicit
    turns = MESSAGES[0]["messages"][:2]
    implicit = {
        "chosen": [*turns, {"role": "assistant", "content": "no"}],
        "rejected": [*turns, {"role": "assistant", "content": "yes"}],
    }
    assert render_dpo_rows(tok, [implicit]) == render_dpo_rows(
        tok, [{"prompt": turns, "chosen": "no", "rejected": "yes"}]
    )
    with pytest.raises(SafelrmError, match="rows:1 field 'messages': expected turns ending"):
        render_sft_rows(tok, [{"messages": turns}], source="rows")
    bad = {**implicit, "rejected": [{"role": "user", "content": "other"}, implicit["rejected"][-1]]}
    with pytest.raises(SafelrmError, match="rows:1 field 'chosen': without 'prompt'"):
        render_dpo_rows(tok, [bad], source="rows")


def test_loading_options_and_device_defaults(tiny_model_dir, tmp_path):
    model, _ = load_for_training(
        str(tiny_model_dir), None, SFTSettings(attn_implementation="eager")
    )
    assert model.config._attn_implementation == "eager"
    with pytest.raises(SafelrmError, match="^load_in_4bit: 4-bit QLoRA needs a CUDA GPU"):
        train_sft(tiny_model_dir, None, [], SFTSettings(load_in_4bit=True), tmp_path)
    assert SFTSettings().use_lean_layers()  # on by default on CPU only
    liger = SFTSettings(trl_args={"use_liger_kernel": True})
    assert not liger.use_lean_layers()
    with pytest.raises(ValueError, match="choose one"):
        SFTSettings(lean_layers=True, trl_args={"use_liger_kernel": True})


def test_report_to_wandb_needs_wandb(tmp_path):
    import importlib.util

    settings = SFTSettings(report_to=["tensorboard", "wandb"])
    if importlib.util.find_spec("wandb") is not None:
        assert settings.to_trl(tmp_path, progress=False).report_to == ["tensorboard", "wandb"]
        return
    with pytest.raises(SafelrmError, match=r"^report_to: 'wandb' needs the wandb package"):
        settings.to_trl(tmp_path, progress=False)


def test_missing_dataset_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["sft", "-o", str(tmp_path / "o")])
    assert isinstance(result.exception, SafelrmError)
    assert str(result.exception).startswith("--dataset: required")
