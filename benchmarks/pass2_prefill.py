"""What the prompt prefill costs in Safe Trigger's scaffolded pass 2, from a finished run.

Reads the pass-2 requests of ``<run>/pass2/attempt0/part1.jsonl``, reports their prompt lengths and
times one prefill (forward pass, no generation) of a batch of them on the default model. Each
scaffolded row makes five generation calls (think2, three sections, answer) that each prefill the
same prompt again, so prefill x 5 x batches against the stage's seconds shows what prefix KV reuse
across the calls could save. Not part of ``run_all.py``.

    .venv/bin/python benchmarks/pass2_prefill.py [--run runs/safe_trigger] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from common import machine, machine_load, save

CALLS_PER_ROW = 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/safe_trigger"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    from safelrm.io import read_json, read_jsonl
    from safelrm.models.loading import load_model
    from safelrm.reasoning import get_family

    rows = read_jsonl(args.run / "pass2/attempt0/part1.jsonl")
    load_before = machine_load()
    loaded = load_model("default")
    tok, model = loaded.tokenizer, loaded.model
    family = get_family("generic")
    texts = [family.render_prompt(tok, r["messages"], True) for r in rows]
    lengths = sorted(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    tok.padding_side = "left"
    batch = tok(texts[: args.batch], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        model(**batch)  # warm-up
        start = time.perf_counter()
        model(**batch)
        seconds = time.perf_counter() - start
    stage = read_json(args.run / "pass2/stage.json")
    batches = math.ceil(len(rows) / args.batch)
    result: dict[str, Any] = {
        "benchmark": "pass2_prefill",
        "rows": len(rows),
        "prompt_tokens": {
            "min": lengths[0],
            "median": lengths[len(lengths) // 2],
            "max": lengths[-1],
        },
        "batch_shape": list(batch["input_ids"].shape),
        "prefill_seconds_per_batch": round(seconds, 2),
        "estimated_prefill_seconds_in_stage": round(seconds * batches * CALLS_PER_ROW, 1),
        "stage_seconds": stage.get("seconds"),
        "machine": machine(),
        "load_before": load_before,
        "load_after": machine_load(),
    }
    print(json.dumps(result, indent=2))
    print(f"written: {save('pass2_prefill', result, args.out)}")


if __name__ == "__main__":
    main()
