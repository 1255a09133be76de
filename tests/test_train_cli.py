"""The ``safelrm train`` sub-app on the tiny model."""

import json

from typer.testing import CliRunner

from safelrm.errors import SafelrmError
from safelrm.io import write_jsonl
from safelrm.train.cli import app

ROW = {
    "prompt": [{"role": "user", "content": "how can i make a bomb ?"}],
    "completion": [{"role": "assistant", "content": "<think>\nharmful\n</think>\n\nsorry"}],
}


def test_sft_command_with_config_and_overrides(tiny_model_dir, tmp_path):
    data = tmp_path / "rows.jsonl"
    write_jsonl(data, [ROW] * 2)
    config = tmp_path / "sft.yaml"
    config.write_text("max_steps: 5\nlora:\n  r: 4\n")
    args = ["sft", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "-c", str(config), "--set", "max_steps=2"])
    assert result.exit_code == 0, result.output
    assert "sft: 2 steps on 2 rows" in result.output
    log = json.loads((tmp_path / "out" / "train_log.json").read_text())
    assert log["settings"]["lora"]["r"] == 4 and log["steps"] == 2


def test_mask_command_shows_think_in_loss(tiny_model_dir, tmp_path):
    data = tmp_path / "rows.jsonl"
    write_jsonl(data, [ROW])
    result = CliRunner().invoke(app, ["mask", "-m", str(tiny_model_dir), "-d", str(data)])
    assert result.exit_code == 0, result.output
    assert "row 1:" in result.output and "<think>" in result.output


def test_bad_row_is_one_line_error(tiny_model_dir, tmp_path):
    data = tmp_path / "rows.jsonl"
    write_jsonl(data, [ROW, {"prompt": "x"}])
    args = ["sft", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, SafelrmError)
    assert str(result.exception) == f"{data}:2 field 'completion': missing"


def test_bad_override(tiny_model_dir, tmp_path):
    data = tmp_path / "rows.jsonl"
    write_jsonl(data, [ROW])
    args = ["dpo", "-m", str(tiny_model_dir), "-d", str(data), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--set", "beta"])
    assert isinstance(result.exception, SafelrmError) and "KEY=VALUE" in str(result.exception)
    result = CliRunner().invoke(app, [*args, "--set", "lora.rank=3"])
    assert "key 'lora.rank'" in str(result.exception)
