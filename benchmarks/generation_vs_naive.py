"""Generation throughput on the default model, side by side in one run:

- naive: one prompt at a time with plain ``model.generate`` (no engine, batch 1), the way a
  naive script would, on the first ``--naive-prompts`` prompts (half before the batched runs,
  half after, so that load drift weighs on both sides);
- the ``hf`` backend batched (the engine), at each ``--batch-sizes`` on all ``--prompts`` prompts;
- llama.cpp (``llama-cpp-python`` on the default model's Q4_1 GGUF, one stream) as the CPU
  reference, when ``llama_cpp`` is importable (skipped otherwise).

Tokens/s counts generated tokens only (reasoning + answer; EOS included where it ends a row).
Targets (issue "Scale out and measure"): batched >= 6x naive, >= 1.5x llama.cpp.

    .venv/bin/python benchmarks/generation_vs_naive.py [--prompts 64] [--naive-prompts 8]
        [--tokens 64] [--batch-sizes 16,32,64] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from common import machine, machine_load, ratio, save, verdict

NAIVE_TARGET = 6.0
LLAMA_TARGET = 1.5


def rendered(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Chat template + ``<think>`` prefill: what both the naive loop and llama.cpp continue."""
    from safelrm.reasoning import get_family

    family = get_family("generic")
    return family.render_prompt(tokenizer, messages, True) + family.reasoning_opener


def naive(loaded: Any, texts: list[str], max_new_tokens: int) -> dict[str, Any]:
    """Per prompt: tokenize, ``model.generate`` greedy, decode. No batching, no engine."""
    import torch

    model, tok = loaded.model, loaded.tokenizer
    tokens = 0
    start = time.perf_counter()
    for text in texts:
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
            )
        new = out[0, enc["input_ids"].shape[1] :]
        tok.decode(new, skip_special_tokens=True)
        tokens += int(new.shape[0])
    seconds = time.perf_counter() - start
    return {
        "prompts": len(texts),
        "batch_size": 1,
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 2),
    }


def combine(before: dict[str, Any], after: dict[str, Any] | None) -> dict[str, Any]:
    """One naive figure from the passes before and after the batched runs."""
    if after is None:
        return before
    seconds = before["seconds"] + after["seconds"]
    tokens = before["tokens"] + after["tokens"]
    return {
        "prompts": before["prompts"] + after["prompts"],
        "batch_size": 1,
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 2),
        "passes_tokens_per_s": [before["tokens_per_s"], after["tokens_per_s"]],
    }


def llama_cpp(texts: list[str], max_new_tokens: int) -> dict[str, Any]:
    """llama-cpp-python on the embedded GGUF, one stream, greedy; None when not installed."""
    if importlib.util.find_spec("llama_cpp") is None:
        return {"skipped": "llama_cpp is not installed (pip install llama-cpp-python)"}
    from llama_cpp import Llama

    from safelrm.models.loading import default_gguf

    llm = Llama(model_path=str(default_gguf()), n_ctx=2048, n_threads=os.cpu_count(), verbose=False)
    llm.create_completion(texts[0], max_tokens=4, temperature=0.0)  # warm-up
    tokens = 0
    start = time.perf_counter()
    for text in texts:
        out = llm.create_completion(text, max_tokens=max_new_tokens, temperature=0.0)
        tokens += int(out["usage"]["completion_tokens"])
    seconds = time.perf_counter() - start
    return {
        "prompts": len(texts),
        "batch_size": 1,
        "gguf": default_gguf().name,
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--prompts", type=int, default=64, help="prompts for the batched runs")
    ap.add_argument("--naive-prompts", type=int, default=8, help="first N prompts, one by one")
    ap.add_argument("--tokens", type=int, default=64, help="reasoning and answer budget each")
    ap.add_argument("--batch-sizes", default="16,32,64")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from generation import measure  # the lead's engine measurement (benchmarks/generation.py)

    from safelrm.data import load_benchmark
    from safelrm.models import GenerationRequest, SamplingParams, load_model, make_engine

    load_before = machine_load()
    make_engine(args.model)  # converts the GGUF once if needed, outside the timings
    loaded = load_model(args.model)
    prompts = load_benchmark("jbb-benign", n=args.prompts, seed=0)
    sampling = SamplingParams(max_reasoning_tokens=args.tokens, max_new_tokens=args.tokens)
    requests = [GenerationRequest(id=p.id, messages=p.chat(), sampling=sampling) for p in prompts]
    texts = [rendered(loaded.tokenizer, p.chat()) for p in prompts[: args.naive_prompts]]
    budget = 2 * args.tokens  # the engine's reasoning + answer budgets

    naive(loaded, texts[:1], 8)  # warm-up
    measure(loaded, 4, requests[:4])
    # Half the naive prompts before the batched runs and half after, so that a load that drifts
    # during the run weighs on both sides alike.
    half = max(1, len(texts) // 2)
    before = naive(loaded, texts[:half], budget)
    results: dict[str, Any] = {}
    for b in [int(x) for x in args.batch_sizes.split(",") if x.strip()]:
        results[f"hf_batch_{b}"] = measure(loaded, b, requests)
    after = naive(loaded, texts[half:], budget) if texts[half:] else None
    results = {"naive_batch_1": combine(before, after), **results}
    results["llama_cpp"] = llama_cpp(texts, budget)

    naive_tps = results["naive_batch_1"]["tokens_per_s"]
    llama_tps = results["llama_cpp"].get("tokens_per_s")
    ratios = {}
    for key, r in results.items():
        if key.startswith("hf_batch_"):
            ratios[key] = {
                "over_naive": ratio(r["tokens_per_s"], naive_tps, 2),
                "over_llama_cpp": ratio(r["tokens_per_s"], llama_tps, 2),
            }
    first_ok = next((k for k, v in ratios.items() if v["over_naive"] >= NAIVE_TARGET), None)
    best = max(ratios, key=lambda k: ratios[k]["over_naive"]) if ratios else None
    result = {
        "benchmark": "generation_vs_naive",
        "model": args.model,
        "dtype": str(loaded.model.dtype),
        "prompts": len(requests),
        "budget_tokens": {"reasoning": args.tokens, "answer": args.tokens, "naive": budget},
        "results": results,
        "ratios": ratios,
        "smallest_batch_reaching_6x_naive": first_ok,
        "targets": {
            "batched_over_naive": verdict(
                ratios[best]["over_naive"] if best else None, NAIVE_TARGET, True
            ),
            "batched_over_llama_cpp": verdict(
                ratios[best]["over_llama_cpp"] if best else None, LLAMA_TARGET, True
            ),
            "best_batch": best,
        },
        "machine": machine(),
        "load_before": load_before,
        "load_after": machine_load(),
    }
    path = save("generation_vs_naive", result, args.out)
    print(json.dumps(result, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
