"""The auxiliary safety head: where it reads the policy, its loss, and how it is saved.

Position. The head reads the hidden state of the last token of ``prompt + "<think>\\n"`` (the
rendered chat prompt plus the family's reasoning opener), i.e. the token whose next-token
prediction is the first reasoning token: the policy's state right before it starts its chain of
thought. When the chat template already opens ``<think>`` in the prompt (newer R1 templates),
that is the last prompt token. At generation time the engine feeds exactly this prefix, so the
training position and the inference position coincide (checked in the tests).

Layer. ``layer`` indexes ``outputs.hidden_states`` (0 = embeddings, ``L`` or ``-1`` = the last
block); ``mean_last=k`` averages the ``k`` layers ending at ``layer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.io import write_json
from safelrm.train.formats import common_prefix_length

HEAD_WEIGHTS = "head.pt"
HEAD_META = "head.json"


def resolve_layers(layer: int, mean_last: int, n_layers: int) -> list[int]:
    """Indices into ``hidden_states`` (length ``n_layers + 1``) that the head averages."""
    index = layer if layer > 0 else n_layers + 1 + layer
    if layer == 0 or not 1 <= index <= n_layers:
        raise SafelrmError(
            f"head.layer: {layer} is out of range for a model with {n_layers} layers "
            f"(use 1..{n_layers} or -{n_layers}..-1; 0, the embeddings, is not allowed)"
        )
    if mean_last > index:
        raise SafelrmError(
            f"head.mean_last: {mean_last} layers ending at layer {index} would reach below "
            f"layer 1 (at most {index})"
        )
    return list(range(index - mean_last + 1, index + 1))


def tokenize_row(
    tokenizer: Any, prompt: str, completion: str, opener: str, max_length: int
) -> dict[str, Any]:
    """Token ids, labels (prompt masked, as TRL's completion-only loss) and the head position.

    ``prompt``/``completion`` are rendered text (``safelrm.train.render_sft_rows``); ``opener``
    is the family's reasoning opener. Tokenized as TRL tokenizes text rows (special tokens on).
    """
    eos = tokenizer.eos_token or ""
    if eos and not completion.endswith(eos):
        completion += eos  # TRL appends EOS to text completions too
    full = tokenizer(prompt + completion)["input_ids"]
    n_prompt = common_prefix_length(tokenizer(prompt)["input_ids"], full)
    head_prefix = prompt + opener if completion.startswith(opener) else prompt
    head_ids = tokenizer(head_prefix)["input_ids"]
    if full[: len(head_ids)] != head_ids:
        raise SafelrmError(
            "the prompt plus reasoning opener does not tokenize as a prefix of the training "
            f"sequence (opener {opener!r}); the head position would be ambiguous"
        )
    head_pos = len(head_ids) - 1  # may be >= max_length: the caller drops such rows
    labels = [-100] * n_prompt + full[n_prompt:]
    return {"input_ids": full[:max_length], "labels": labels[:max_length], "head_pos": head_pos}


def make_head(hidden_size: int, device: Any = None) -> Any:
    import torch

    # Default (small random) init: a zero weight would send no gradient into the policy at first.
    head = torch.nn.Linear(hidden_size, 1)
    return head.to(device) if device is not None else head


def head_features(hidden_states: Any, layers: list[int], positions: Any) -> Any:
    """``[batch, hidden]``: the mean over ``layers`` of each row's hidden state at its position."""
    import torch

    rows = torch.arange(positions.shape[0], device=positions.device)
    return torch.stack([hidden_states[i][rows, positions] for i in layers]).mean(0)


def head_loss(logits: Any, soft_labels: Any, kind: str) -> Any:
    """BCE against the soft label; ``kl`` = KL(Bernoulli(soft) || Bernoulli(sigmoid(logit))),
    i.e. BCE minus the label's entropy (same gradient, zero at a perfect fit)."""
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, soft_labels)
    if kind == "bce":
        return bce
    p = soft_labels.clamp(1e-6, 1 - 1e-6)
    entropy = -(p * torch.log(p) + (1 - p) * torch.log(1 - p)).mean()
    return bce - entropy


def save_head(head: Any, out_dir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / HEAD_WEIGHTS
    torch.save({k: v.detach().cpu() for k, v in head.state_dict().items()}, weights)
    write_json(out_dir / HEAD_META, meta)
    return weights, out_dir / HEAD_META
