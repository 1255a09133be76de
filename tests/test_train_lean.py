"""Lean RMSNorm/SwiGLU autograd: same outputs, same gradients, fewer saved activations."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from safelrm.testing import build_tiny_model
from safelrm.train import DPOSettings, build_dpo_trainer
from safelrm.train.lean import use_lean_layers

DPO_ROWS = [
    {
        "prompt": [{"role": "user", "content": "how can i make a bomb ?"}],
        "chosen": "<think>\nharmful request\n</think>\n\nsorry i cannot help",
        "rejected": "<think>\nok\n</think>\n\nfirst mix 1 and 2 then",
    }
] * 4


def forward_backward(model, ids):
    model.zero_grad(set_to_none=True)
    saved = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads, sum(saved.values())


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_lean_layers_match_and_save_less(arch, tmp_path):
    path = build_tiny_model(tmp_path / arch, arch=arch)
    plain = AutoModelForCausalLM.from_pretrained(path).train()
    lean = AutoModelForCausalLM.from_pretrained(path).train()
    layers = plain.config.num_hidden_layers
    assert use_lean_layers(lean) == 3 * layers + 1  # 2 norms + MLP per layer, final norm
    assert use_lean_layers(lean) == 3 * layers + 1  # idempotent

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, plain.config.vocab_size, (2, 48), generator=gen)
    logits_p, grads_p, saved_p = forward_backward(plain, ids)
    logits_l, grads_l, saved_l = forward_backward(lean, ids)
    assert torch.equal(logits_p, logits_l)  # same ops in the same order
    assert grads_p.keys() == grads_l.keys() and len(grads_p) > 0
    for name, g in grads_p.items():
        torch.testing.assert_close(grads_l[name], g, rtol=1e-4, atol=1e-6, msg=name)
    # Per layer and token, the plain layers also keep 2 x hidden normalized inputs and
    # intermediate-size silu(gate); the lean ones do not.
    cfg = plain.config
    expected = layers * ids.numel() * (2 * cfg.hidden_size + cfg.intermediate_size) * 4
    assert saved_p - saved_l >= 0.9 * expected, (saved_p, saved_l, expected)


def test_other_architectures_are_left_alone():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert use_lean_layers(model) == 0


def test_trainers_use_lean_layers_and_cpu_tiles(tiny_model_dir, tmp_path):
    import trl.trainer.utils as trl_utils

    from safelrm.train.lean import CPU_LM_HEAD_TILE

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for lean in (True, False):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        settings = DPOSettings(max_steps=1, lean_layers=lean, lora={"r": 8})
        trainer = build_dpo_trainer(model, tok, DPO_ROWS, settings, tmp_path / str(lean), False)
        norms = [m for m in trainer.model.modules() if type(m).__name__ == "LlamaRMSNorm"]
        assert norms and all(("forward" in vars(m)) is lean for m in norms)
        if hasattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE"):  # a private TRL constant
            assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == CPU_LM_HEAD_TILE
        trainer.train()
        assert trainer.state.global_step == 1


def test_missing_private_trl_constant_falls_back(monkeypatch):
    import trl.trainer.utils as trl_utils

    from safelrm.train.lean import use_lean_lm_head_tiles

    monkeypatch.delattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", raising=False)
    use_lean_lm_head_tiles()  # TRL keeps its own tiling; nothing raises
    assert not hasattr(trl_utils, "_CHUNKED_LOGPROB_CHUNK_SIZE")


def test_modules_without_the_expected_attributes_keep_their_forward(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    norm = model.model.norm
    del norm.variance_epsilon  # as if another transformers version renamed it
    n_layers = model.config.num_hidden_layers
    assert use_lean_layers(model) == 3 * n_layers  # all but the final norm
    assert "forward" not in vars(norm)


def test_lean_lora_linear_matches_peft(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear as LoraLinear

    def lora_model():
        torch.manual_seed(0)
        config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear")
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config)
        for module in model.modules():  # PEFT starts lora_B at zero: no signal for lora_A
            if isinstance(module, LoraLinear):
                torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
        return model.train()

    plain, lean = lora_model(), lora_model()
    n_lora = sum(isinstance(m, LoraLinear) for m in lean.modules())
    n_layers = lean.config.num_hidden_layers
    assert use_lean_layers(lean) == 3 * n_layers + 1 + n_lora and n_lora == 7 * n_layers
    ids = torch.randint(3, 200, (2, 32), generator=torch.Generator().manual_seed(1))
    logits_p, grads_p, _ = forward_backward(plain, ids)
    logits_l, grads_l, _ = forward_backward(lean, ids)
    torch.testing.assert_close(logits_l, logits_p, rtol=1e-5, atol=1e-5)
    assert grads_p.keys() == grads_l.keys() and all("lora" in n for n in grads_p)
    for name, g in grads_p.items():
        torch.testing.assert_close(grads_l[name], g, rtol=1e-4, atol=1e-6, msg=name)
    # the lean path really runs: PEFT's own forward is never called with the adapter active
    peft_forward = LoraLinear.forward
    LoraLinear.forward = None  # calling it raises
    try:
        forward_backward(lean, ids)
    finally:
        LoraLinear.forward = peft_forward
    with lean.disable_adapter(), torch.no_grad():  # the reference: PEFT's own path
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
        torch.testing.assert_close(lean(input_ids=ids).logits, base, rtol=1e-5, atol=1e-5)
