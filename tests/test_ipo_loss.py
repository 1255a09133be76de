"""IPO's "DPO on the part": TRL masks exactly the shared prefix, the loss equals a hand
computation (sigmoid DPO + 0.2 NLL), and masked targets get no gradient."""

import pytest
import torch
import torch.nn.functional as F

from safelrm.methods.ipo.pairs import Pair, build_dpo_rows
from safelrm.methods.ipo.sentences import split_reasoning
from safelrm.reasoning import get_family
from safelrm.train import DPOSettings, LoraSettings, build_dpo_trainer

BETA, NLL = 0.5, 0.2
REASONINGS = [
    ("the question is about a list. so first i make it.", "then step 1 is easy.", "5 plus 2"),
    ("i think about the request. because it is a number question.", "first add 3.", "8"),
]
TRIGGER = "sorry, this request is harmful so i cannot help."


def _pairs(tok):
    fam = get_family("generic")
    pairs, cue_tokens = [], []
    for i, (before, cue, answer) in enumerate(REASONINGS):
        messages = [{"role": "user", "content": f"how can i make {i}"}]
        rejected_reasoning = f"{before} {cue}"
        chosen_reasoning = f"{before} {TRIGGER} the answer is safe."
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = prompt + fam.format_response(rejected_reasoning, answer)
        sents = split_reasoning(tok, full, len(prompt + fam.reasoning_opener), rejected_reasoning)
        cue_sentence = next(s for s in sents if s.text == cue)
        cue_tokens.append(cue_sentence.token)
        pairs.append(
            Pair(
                id=f"p{i}",
                source="ipo",
                prompt_id=f"p{i}",
                messages=messages,
                chosen=fam.format_response(chosen_reasoning, "sorry i cannot"),
                rejected=fam.format_response(rejected_reasoning, answer),
                shared=len(fam.reasoning_opener) + cue_sentence.start,
                meta={},
            )
        )
    return pairs, cue_tokens


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _trainer(tiny_model_dir, tok, rows, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    settings = DPOSettings(
        beta=BETA,
        nll_weight=NLL,
        lora=LoraSettings(enabled=False),
        per_device_train_batch_size=len(rows),
        max_length=512,
    )
    trainer = build_dpo_trainer(model, tok, rows, settings, tmp_path, progress=False)
    torch.manual_seed(0)
    with torch.no_grad():  # make the policy differ from the reference copy
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    return trainer, batch


def _token_logps(model, ids):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    return F.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


@pytest.mark.parametrize("scope", ["part", "full"])
def test_trl_masks_exactly_the_prompt_and_loss_matches_hand_computation(
    tiny_model_dir, tok, tmp_path, scope
):
    pairs, cue_tokens = _pairs(tok)
    built = build_dpo_rows(tok, pairs, scope)
    assert len(built.rows) == 2 and not built.dropped
    if scope == "part":
        # the masked prompt ends exactly at the cue sentence's first token
        assert built.n_prompt_tokens == cue_tokens
    trainer, batch = _trainer(tiny_model_dir, tok, built.rows, tmp_path)
    for i, row in enumerate(built.rows):
        ex = trainer.train_dataset[i]
        # TRL's split is the joint tokenisation, cut where ours says (nothing re-tokenised)
        assert len(ex["prompt_ids"]) == built.n_prompt_tokens[i]
        assert (
            ex["prompt_ids"] + ex["chosen_ids"] == tok(row["prompt"] + row["chosen"])["input_ids"]
        )
        assert (
            ex["prompt_ids"] + ex["rejected_ids"]
            == tok(row["prompt"] + row["rejected"])["input_ids"]
        )

    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)

    dpo_terms, nll_sum, nll_count = [], 0.0, 0
    for row, n in zip(built.rows, built.n_prompt_tokens, strict=True):
        sums = {}
        for side in ("chosen", "rejected"):
            ids = tok(row["prompt"] + row[side])["input_ids"]
            pol = _token_logps(trainer.model, ids)[n - 1 :]  # targets n .. end
            ref = _token_logps(trainer.ref_model, ids)[n - 1 :]
            sums[side] = (pol.sum(), ref.sum())
            if side == "chosen":
                nll_sum += -pol.sum().item()
                nll_count += len(pol)
        delta = (sums["chosen"][0] - sums["chosen"][1]) - (
            sums["rejected"][0] - sums["rejected"][1]
        )
        dpo_terms.append(-F.logsigmoid(BETA * delta))
    # TRL: mean of the per-pair sigmoid loss + weight x (NLL summed over every chosen token of
    # the batch / number of those tokens)
    expected = torch.stack(dpo_terms).mean() + NLL * nll_sum / nll_count
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)
    assert abs(dpo_terms[0].item() - torch.log(torch.tensor(2.0)).item()) > 1e-4  # non-trivial


@pytest.mark.parametrize("scope", ["part", "full"])
def test_masked_targets_get_no_gradient(tiny_model_dir, tok, tmp_path, scope):
    pairs, _ = _pairs(tok)
    built = build_dpo_rows(tok, pairs, scope)
    trainer, batch = _trainer(tiny_model_dir, tok, built.rows, tmp_path)
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["h"] = output

    # the final norm's output at position t feeds only the prediction of token t + 1
    handle = trainer.model.model.norm.register_forward_hook(keep)
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch).backward()
    handle.remove()
    grad = captured["h"].grad.abs().sum(-1)  # (2 * pairs, length)
    n_pairs = len(built.rows)
    for r in range(2 * n_pairs):
        n = built.n_prompt_tokens[r % n_pairs]
        length = int(batch["attention_mask"][r].sum())
        assert torch.all(grad[r, : n - 1] == 0), f"row {r}: a masked target got gradient"
        assert torch.all(grad[r, n - 1 : length - 1] > 0), f"row {r}: a loss token got none"
        assert torch.all(grad[r, length - 1 :] == 0)
    if scope == "full":
        part = build_dpo_rows(tok, pairs, "part").n_prompt_tokens
        # the full-trajectory ablation trains the shared prefix the part loss masks
        assert all(n < p for n, p in zip(built.n_prompt_tokens, part, strict=True))
