"""Generation throughput of the `hf` backend on the default model: one prompt at a time (as a
naive script would) vs batch 16, on the same prompts, in one run. Writes JSON.

    .venv/bin/python benchmarks/generation.py [--prompts 16] [--tokens 64] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from safelrm.data import load_benchmark
from safelrm.io import write_json
from safelrm.models import GenerationRequest, SamplingParams, load_model, make_engine
from safelrm.models.hf import HFBackend


def measure(loaded, batch_size: int, requests) -> dict:
    from safelrm.models.engine import Engine
    from safelrm.reasoning import get_family

    engine = Engine(HFBackend(loaded, batch_size=batch_size), get_family("generic"))
    start = time.perf_counter()
    recs = engine.generate(requests, progress=False)
    seconds = time.perf_counter() - start
    tokens = sum(r.n_reasoning_tokens + r.n_answer_tokens for r in recs)
    return {
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64, help="reasoning and answer budget each")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/generation.json"))
    args = ap.parse_args()
    make_engine("default")  # converts the GGUF once if needed, outside the timings
    loaded = load_model("default")
    prompts = load_benchmark("jbb-benign", n=args.prompts, seed=0)
    sampling = SamplingParams(max_reasoning_tokens=args.tokens, max_new_tokens=args.tokens)
    requests = [GenerationRequest(id=p.id, messages=p.chat(), sampling=sampling) for p in prompts]
    measure(loaded, 16, requests[:2])  # warm-up
    naive = measure(loaded, 1, requests)
    batched = measure(loaded, 16, requests)
    result = {
        "model": "default (SmolLM2-135M-Instruct, fp32)",
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "prompts": len(requests),
        "budget_tokens": {"reasoning": args.tokens, "answer": args.tokens},
        "batch_1": naive,
        "batch_16": batched,
        "ratio_batch16_over_batch1": round(batched["tokens_per_s"] / naive["tokens_per_s"], 2),
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
