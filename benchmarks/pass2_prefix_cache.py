"""Safe Trigger's scaffolded pass 2 with the hf backend's prefix cache on and off, side by side.

Takes the pass-2 rows (harmful and jailbreak) of a finished run's pass 1, runs attempt 0 of
scaffolded pass 2 (think2, three sections, answer: five calls that each continue the text so far)
on the default model with the run's recipe settings, once with automatic prefix caching and once
without, and reports the seconds of each, their ratio, how many rows came out identical, and the
share of prompt tokens the cache served. Not part of ``run_all.py`` (it needs a finished run).

    .venv/bin/python benchmarks/pass2_prefix_cache.py [--run runs/safe_trigger] [--rows 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine, machine_load, save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/safe_trigger"))
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from safelrm.io import read_json, read_jsonl
    from safelrm.methods.safe_trigger.generation import Pass2Generator
    from safelrm.methods.safe_trigger.recipe import SafeTriggerRecipe
    from safelrm.methods.safe_trigger.sft_samples import SAFETY_KINDS
    from safelrm.methods.safe_trigger.templates import load_pass2_template
    from safelrm.models import make_engine

    recipe = SafeTriggerRecipe.model_validate(read_json(args.run / "recipe.json"))
    rows = [x for x in read_jsonl(args.run / "pass1/samples.jsonl") if x["kind"] in SAFETY_KINDS]
    rows = rows[: args.rows]
    g, s = recipe.generation, recipe.pass2
    template = load_pass2_template(s.prompt_file)
    load_before = machine_load()
    runs: dict[str, Any] = {}
    for name, gb in (("cache", g.prefix_cache_gb or 2.0), ("no_cache", 0.0)):
        engine = make_engine(
            recipe.model, backend="hf", batch_size=g.batch_size, family=g.family, prefix_cache_gb=gb
        )
        with tempfile.TemporaryDirectory() as work:
            gen = Pass2Generator(engine, template, s, True, recipe.seed, Path(work))
            start = time.perf_counter()
            results = gen.attempt(rows, 0)
            seconds = time.perf_counter() - start
        cache = engine.backend.prefix_cache
        runs[name] = {
            "seconds": round(seconds, 1),
            "results": results,
            "cache": dict(cache.stats) if cache else None,
        }
        print(f"{name}: {seconds:.1f} s", flush=True)
    same = sum(
        a["answer_text"] == b["answer_text"] and a["think2"] == b["think2"]
        for a, b in zip(runs["cache"]["results"], runs["no_cache"]["results"], strict=True)
    )
    stats = runs["cache"]["cache"]
    result: dict[str, Any] = {
        "benchmark": "pass2_prefix_cache",
        "rows": len(rows),
        "batch_size": g.batch_size,
        "seconds_with_cache": runs["cache"]["seconds"],
        "seconds_without_cache": runs["no_cache"]["seconds"],
        "with_vs_without": round(runs["cache"]["seconds"] / runs["no_cache"]["seconds"], 3),
        "identical_rows": same,
        "prompt_tokens": stats["prompt_tokens"],
        "served_from_cache": round(stats["cached_tokens"] / stats["prompt_tokens"], 3),
        "machine": machine(),
        "load_before": load_before,
        "load_after": machine_load(),
    }
    print(json.dumps(result, indent=2))
    print(f"written: {save('pass2_prefix_cache', result, args.out)}")


if __name__ == "__main__":
    main()
