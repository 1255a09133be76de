"""Cost of IPO's intervention continuations with prefix reuse vs fresh rollouts of the same length.

IPO replaces a compliance cue in a reasoning with each of k trigger sentences and lets the model
continue. ``safelrm.methods.ipo.continuation.continue_from_prefix`` prefills the shared prefix
(prompt + reasoning up to the intervention point) once, repeats its KV cache across the k rows
and generates only the continuations. This benchmark times, on the default model and with the
IPO engineer's own ``measure_continuation_cost``:

- fresh: k rollouts of prefix + new tokens from the prompt (one batch);
- reuse: ``continue_from_prefix`` (KV cache of the prefix computed once, k continuations);
- re-encode: the engine's ``prefix`` path (each row re-encodes prompt + prefix, then continues).

Greedy, EOS suppressed so every row generates its full budget; best of ``--repeats``.
Target: reuse <= 0.5x fresh. The ratio depends on new / (prefix + new): it is reported for each
``--shapes`` pair.

    .venv/bin/python benchmarks/ipo_continuation.py [--shapes 96:48,192:48] [--k 6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import machine, machine_load, save, verdict

TARGET = 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--shapes", default="96:48,192:48", help="PREFIX:NEW token pairs")
    ap.add_argument("--k", type=int, default=6, help="continuations per prefix (IPO: 6 triggers)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from safelrm.data import load_benchmark
    from safelrm.methods.ipo.continuation import measure_continuation_cost
    from safelrm.methods.ipo.detector import data_lines
    from safelrm.models import load_model
    from safelrm.reasoning import get_family

    load_before = machine_load()
    loaded = load_model(args.model)
    family = get_family("generic")
    harmful = load_benchmark("jbb-harmful", n=1, seed=0)[0]
    prompt = family.render_prompt(loaded.tokenizer, harmful.chat(), True) + family.reasoning_opener
    triggers = data_lines("triggers.txt")
    starts = [" " + triggers[i % len(triggers)] for i in range(args.k)]

    measure_continuation_cost(loaded.model, loaded.tokenizer, prompt, 8, 4, starts[:2], 1)  # warm
    shapes = []
    for pair in args.shapes.split(","):
        n_prefix, n_new = (int(x) for x in pair.split(":"))
        cost = measure_continuation_cost(
            loaded.model, loaded.tokenizer, prompt, n_prefix, n_new, starts, args.repeats
        )
        shapes.append({**cost, "load": machine_load()["loadavg"]})
    best = min(s["reuse_vs_fresh"] for s in shapes)
    worst = max(s["reuse_vs_fresh"] for s in shapes)
    result = {
        "benchmark": "ipo_continuation",
        "model": args.model,
        "helper": "safelrm.methods.ipo.continuation.continue_from_prefix",
        "k": args.k,
        "shapes": shapes,
        "targets": {
            "reuse_vs_fresh_worst": verdict(worst, TARGET, False),
            "reuse_vs_fresh_best": verdict(best, TARGET, False),
        },
        "machine": machine(),
        "load_before": load_before,
        "load_after": machine_load(),
    }
    path = save("ipo_continuation", result, args.out)
    print(json.dumps(result, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
