"""Did a SafePath run teach the primer? Log-probability of the primer after the reasoning opener
on the run's trigger prompts, for the base model and the trained one.

    .venv/bin/python benchmarks/safepath_primer_logprob.py [--run runs/safepath] [--n 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def primer_scores(model_path: str, data: list[dict]) -> tuple[float, float]:
    """Mean log p(primer) and mean p(first primer token) over tokenized trigger rows."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    total, first = [], []
    for row in data:
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor(row["labels"])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
        target = labels[1:]
        keep = target != -100
        lp = logp[keep].gather(1, target[keep][:, None]).squeeze(1)
        total.append(lp.sum().item())
        first.append(lp[0].exp().item())
    return sum(total) / len(total), sum(first) / len(first)


def main() -> None:
    import torch

    from safelrm.io import read_json, read_jsonl
    from safelrm.methods.safepath.stages import GROUP, primer_text
    from safelrm.methods.safepath.trainer import tokenize_rows
    from safelrm.models import load_tokenizer, resolve_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="runs/safepath")
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    recipe = read_json(run / "recipe.json")
    prompts = [p for p in read_jsonl(run / "prompts" / "prompts.jsonl")]
    trigger = [p for p in prompts if p["meta"][GROUP] == "trigger"][: args.n]
    primer = primer_text((recipe.get("primer") or {}).get("file"))
    rows = [
        {
            "prompt": [{"role": "user", "content": p["text"]}],
            "prefill": "<think>\n",
            "completion": primer,
            "open_ended": True,
        }
        for p in trigger
    ]
    data = tokenize_rows(load_tokenizer(recipe["model"]), rows, 512)
    out = {}
    for name, path in (
        ("base", resolve_model(recipe["model"])),
        ("trained", str(run / "train" / "merged")),
    ):
        logp, p_first = primer_scores(path, data)
        out[name] = {"mean_logp_primer": round(logp, 2), "mean_p_first_token": round(p_first, 4)}
    print(json.dumps({"primer": primer, "prompts": len(data), **out}, indent=1))


if __name__ == "__main__":
    main()
