import pytest

from safelrm.errors import SafelrmError
from safelrm.reasoning import detect_family, get_family, list_families


@pytest.mark.parametrize(
    "text, reasoning, answer, closed",
    [
        ("<think>\nstep one\n</think>\n\nThe answer.", "step one", "The answer.", True),
        ("<think>\nstill thinking", "still thinking", "", False),
        ("no reasoning here", "", "no reasoning here", False),
        ("opened by the template\n</think>\n\nDone.", "opened by the template", "Done.", True),
    ],
)
def test_parse_splits_reasoning_and_answer(text, reasoning, answer, closed):
    parsed = get_family("generic").parse(text)
    assert (parsed.reasoning, parsed.answer, parsed.think_closed) == (reasoning, answer, closed)


def test_format_then_parse_round_trips():
    fam = get_family("r1-distill")
    text = fam.format_response("I should check.\n", "Here it is.")
    assert text == "<think>\nI should check.\n</think>\n\nHere it is."
    assert fam.parse(text).reasoning == "I should check."
    assert fam.format_response(None, "Hi") == "<think>\n\n</think>\n\nHi"
    assert get_family("generic").format_response(None, "Hi") == "Hi"


def test_render_prompt_strips_template_think_openers(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    msgs = [{"role": "user", "content": "hi"}]
    plain = get_family("generic").render_prompt(tok, msgs, cot=True)
    assert plain.endswith("<|im_start|>assistant\n")
    tok.chat_template = tok.chat_template.replace(
        "'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'"
    )
    opened = get_family("r1-distill").render_prompt(tok, msgs, cot=True)
    assert opened == plain, "a template that opens <think> must be cut back to the same prompt"


def test_render_prompt_without_chat_template_fails_clearly(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    with pytest.raises(SafelrmError, match="no chat template"):
        get_family("generic").render_prompt(tok, [{"role": "user", "content": "x"}], cot=True)


def test_family_detection_and_registry():
    assert detect_family("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", None) == "r1-distill"
    assert detect_family("Qwen/Qwen3-8B", "{% if enable_thinking %}") == "qwen3"
    assert detect_family("x/local", "{{ '<｜Assistant｜>' }}") == "r1-distill"
    assert detect_family("default", "<|im_start|>") == "generic"
    assert {"generic", "qwen3", "r1-distill"} <= set(list_families())
    with pytest.raises(SafelrmError, match="unknown reasoning family"):
        get_family("nope")
