"""Rendering of SFT/DPO rows, the loss mask TRL builds from them, and settings validation."""

import pytest
from transformers import AutoTokenizer

from safelrm.config import parse_config
from safelrm.errors import SafelrmError
from safelrm.methods.safe_trigger.recipe import SafeTriggerRecipe
from safelrm.testing import CHATML_TEMPLATE
from safelrm.train import (
    DPOSettings,
    SFTSettings,
    completion_mask_report,
    end_of_turn,
    render_dpo_rows,
    render_sft_rows,
)

THINK = "<think>\nthe request is harmful so i cannot help\n</think>\n\n"
ANSWER = "<safe>sorry</safe>\n\nsorry i cannot help with that"
PROMPT = [{"role": "user", "content": "how can i make a bomb ?"}]

# Like the stock Qwen3 / R1 templates: reasoning is cut from assistant turns when rendered.
STRIPPING_TEMPLATE = (
    "{% for m in messages %}{% set c = m['content'] %}"
    "{% if m['role'] == 'assistant' and '</think>' in c %}{% set c = c.split('</think>')[-1] %}"
    "{% endif %}{{ '<|im_start|>' + m['role'] + '\n' + c + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}"
)


@pytest.fixture
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def sft_row(completion=THINK + ANSWER):
    return {"prompt": PROMPT, "completion": [{"role": "assistant", "content": completion}]}


def test_render_sft_keeps_reasoning_and_ends_turn(tok):
    (row,) = render_sft_rows(tok, [sft_row()])
    assert (
        row["prompt"]
        == "<|im_start|>user\nhow can i make a bomb ?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert row["completion"] == THINK + ANSWER + "<|im_end|>"
    # A rendered (string) prompt and a string completion pass through unchanged.
    assert render_sft_rows(tok, [row]) == [row]


def test_loss_mask_covers_think_and_excludes_prompt(tok):
    rows = [sft_row(), sft_row("<think>\nshort\n</think>\n\nok")]
    report = completion_mask_report(tok, rows, max_length=512)
    assert len(report) == 2
    first = report[0]
    assert first.loss_text == THINK + ANSWER + "<|im_end|>"
    assert first.prompt_text == render_sft_rows(tok, rows[:1])[0]["prompt"]
    # The prompt is one contiguous masked block, then every completion token is in the loss.
    n_prompt = first.in_loss.index(True)
    assert not any(first.in_loss[:n_prompt]) and all(first.in_loss[n_prompt:])
    assert "reasoning" not in first.prompt_text and "harmful" in first.loss_text
    assert report[1].loss_text == "<think>\nshort\n</think>\n\nok<|im_end|>"


def test_loss_mask_truncation_cuts_the_end(tok):
    report = completion_mask_report(tok, [sft_row()], max_length=24)
    assert len(report[0].tokens) == 24
    assert report[0].loss_text.startswith("<think>") and not report[0].loss_text.endswith("help")


def test_stripping_template_with_think_in_generation_prompt(tok):
    tok.chat_template = STRIPPING_TEMPLATE
    (row,) = render_sft_rows(tok, [sft_row()])
    assert row["prompt"].endswith("<|im_start|>assistant\n<think>\n")
    # The opener already sits in the prompt: not repeated, and the reasoning itself is kept.
    assert row["completion"] == THINK[len("<think>\n") :] + ANSWER + "<|im_end|>"
    (mask,) = completion_mask_report(tok, [sft_row()], max_length=512)
    assert mask.prompt_text + mask.loss_text == row["prompt"] + row["completion"]
    assert mask.loss_text.startswith("the request is harmful")


def test_end_of_turn_probe(tok):
    assert end_of_turn(tok) == "<|im_end|>"
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert end_of_turn(tok) == tok.eos_token
    tok.chat_template = CHATML_TEMPLATE


def test_render_dpo_rows(tok):
    rows = [
        {"prompt": PROMPT, "chosen": THINK + ANSWER, "rejected": "<think>\nok\n</think>\n\nfirst"}
    ]
    (row,) = render_dpo_rows(tok, rows)
    assert row["prompt"].endswith("<|im_start|>assistant\n")
    assert row["chosen"] == THINK + ANSWER + "<|im_end|>"
    assert row["rejected"].startswith("<think>\nok")


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"prompt": PROMPT}], "sft rows:1 field 'completion': missing"),
        ([sft_row(), {"prompt": "x", "completion": 3}], "sft rows:2 field 'completion'"),
        ([{"prompt": [{"role": "user"}], "completion": "x"}], "sft rows:1 field 'prompt'"),
        ([{"prompt": "x", "completion": [{"role": "user", "content": "y"}]}], "one assistant"),
        ([], "no rows"),
    ],
)
def test_bad_sft_rows_name_row_and_field(tok, rows, message):
    with pytest.raises(SafelrmError, match=message):
        render_sft_rows(tok, rows)


def test_bad_dpo_row(tok):
    with pytest.raises(SafelrmError, match="dpo rows:1 field 'rejected': missing"):
        render_dpo_rows(tok, [{"prompt": "p", "chosen": "c"}])


def test_settings_map_to_trl_for_cpu(tmp_path):
    args = SFTSettings(max_steps=3).to_trl(tmp_path, progress=False)
    assert (args.bf16, args.use_cpu, args.report_to) == (False, True, ["tensorboard"])
    assert (args.save_strategy, args.save_steps, args.save_total_limit) == ("steps", 0.1, 2)
    assert args.completion_only_loss and args.max_length == 1024 and args.logging_steps == 1
    assert args.activation_checkpointing is False
    dpo = DPOSettings(nll_weight=0.5).to_trl(tmp_path, progress=False)
    assert (dpo.loss_type, dpo.loss_weights, dpo.beta) == (["sigmoid", "sft"], [1.0, 0.5], 0.1)


def test_settings_validation_is_one_line():
    with pytest.raises(SafelrmError, match="recipe.yaml: key 'lora.r'"):
        parse_config(SFTSettings, {"lora": {"r": 0}}, "recipe.yaml")
    with pytest.raises(SafelrmError, match="loss_weights has 1 entries"):
        parse_config(DPOSettings, {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]})
    with pytest.raises(SafelrmError, match="key 'lr'"):
        parse_config(DPOSettings, {"lr": 1.0})


@pytest.mark.parametrize(
    "old,new",
    [
        ("epochs", "num_train_epochs"),
        ("per_device_batch_size", "per_device_train_batch_size"),
        ("grad_accum", "gradient_accumulation_steps"),
        ("lr_scheduler", "lr_scheduler_type"),
        ("warmup_ratio", "warmup_steps"),
        ("torch_dtype", "dtype"),
    ],
)
def test_old_names_give_the_new_one(old, new):
    with pytest.raises(SafelrmError) as e:
        parse_config(SafeTriggerRecipe, {"method": "safe_trigger", "sft": {old: 1}}, "r.yaml")
    assert str(e.value) == (
        f"r.yaml: key 'sft': value error, '{old}' is now '{new}', the name TRL uses: rename the key"
    )


def test_trl_args_pass_through_untouched(tmp_path):
    settings = parse_config(
        SFTSettings, {"trl_args": {"optim": "adafactor"}, "adam_beta2": 0.95, "lora_r": 8}
    )
    assert settings.trl_args == {"optim": "adafactor", "adam_beta2": 0.95}  # top level moved in
    assert settings.lora.r == 8  # TRL ModelConfig's LoRA name
    args = settings.to_trl(tmp_path, progress=False)
    assert (args.optim, args.adam_beta2) == ("adafactor", 0.95)
    dpo = parse_config(DPOSettings, {"trl_args": {"label_smoothing": 0.1}}).to_trl(tmp_path, False)
    assert dpo.label_smoothing == 0.1


@pytest.mark.parametrize(
    "trl_args,message",
    [
        ({"no_such_key": 1}, "trl_args.no_such_key: not a field of TRL's SFTConfig"),
        ({"label_smoothing": 0.1}, "trl_args.label_smoothing: not a field of TRL's SFTConfig"),
        ({"learning_rate": 1.0}, "trl_args.learning_rate: a named setting"),
        ({"output_dir": "x"}, "trl_args.output_dir: set by safelrm"),
    ],
)
def test_bad_trl_args_name_the_key(trl_args, message):
    with pytest.raises(SafelrmError, match=message) as e:
        parse_config(SFTSettings, {"trl_args": trl_args}, "recipe.yaml")
    assert "\n" not in str(e.value)


def test_bad_trl_value_is_one_line_before_any_work():
    with pytest.raises(
        SafelrmError, match="^r.yaml: key 'sft': .*SFTConfig: .*no_such_optimizer"
    ) as e:
        parse_config(
            SafeTriggerRecipe,
            {"method": "safe_trigger", "sft": {"optim": "no_such_optimizer"}},
            "r.yaml",
        )
    assert "\n" not in str(e.value)


def test_unknown_top_level_key_still_rejected():
    with pytest.raises(SafelrmError, match="key 'no_such_setting'"):
        parse_config(SFTSettings, {"no_such_setting": 1}, "recipe.yaml")


def test_renamed_and_new_settings_keep_stage_hashes():
    """Stage hashes are computed from the names and fields runs were made with: a rename or a new
    option at its default reruns no stage."""
    settings = SFTSettings(num_train_epochs=2, per_device_train_batch_size=4, warmup_steps=0.1)
    hashed = settings.model_dump(mode="json", context={"stage_hash": True})
    assert (hashed["epochs"], hashed["per_device_batch_size"], hashed["warmup_ratio"]) == (
        2,
        4,
        0.1,
    )
    assert {"grad_accum", "lr_scheduler"} <= hashed.keys()
    new = {"save_steps", "report_to", "trl_args", "lean_layers", "load_in_4bit", "model_revision"}
    assert not new & hashed.keys() and not new & settings.model_dump().keys()
    shown = settings.model_dump(mode="json")  # recipe.json and train_log.json: the new names
    assert shown["num_train_epochs"] == 2 and "epochs" not in shown
    assert SFTSettings(save_steps=50).model_dump()["save_steps"] == 50
