"""`make bench`: every benchmark in turn (each in its own process), then one summary of the ratios
against the issue's targets, with the machine load next to each.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only generation,dpo,ipo,e2e]
        [--threads N] [--run runs/safe_trigger] [--summarize]

``--quick`` runs tiny settings (a smoke test of the benchmark code, minutes; its figures mean
little). Results: ``benchmarks/results/<name>.json`` and ``benchmarks/results/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, machine_load, save

HERE = Path(__file__).resolve().parent

FULL = {
    "generation": ["generation_vs_naive.py"],
    "dpo": ["dpo_memory.py"],
    "ipo": ["ipo_continuation.py"],
    "e2e": ["end_to_end.py"],
}
QUICK = {
    "generation": [
        "generation_vs_naive.py",
        "--prompts",
        "4",
        "--naive-prompts",
        "2",
        "--tokens",
        "8",
        "--batch-sizes",
        "4",
    ],
    "dpo": ["dpo_memory.py", "--steps", "2", "--batch", "1", "--max-length", "64"]
    + ["--repeats", "1"],
    "ipo": ["ipo_continuation.py", "--shapes", "16:8", "--k", "2", "--repeats", "1"],
    "e2e": ["end_to_end.py"],
}
RESULT_FILE = {
    "generation": "generation_vs_naive",
    "dpo": "dpo_memory",
    "ipo": "ipo_continuation",
    "e2e": "end_to_end",
}


def headline(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The figures a reader wants from each result, with the load they were taken under."""
    load = result.get("load_before", {}).get("loadavg"), result.get("load_after", {}).get("loadavg")
    if name == "generation":
        best = result["targets"]["best_batch"]
        res = result["results"]
        return {
            "naive_tokens_per_s": res["naive_batch_1"]["tokens_per_s"],
            **{f"{k}_tokens_per_s": v["tokens_per_s"] for k, v in res.items() if "hf_batch" in k},
            "llama_cpp_tokens_per_s": res["llama_cpp"].get("tokens_per_s"),
            "ratios": result["ratios"],
            "best_batch": best,
            "smallest_batch_reaching_6x_naive": result["smallest_batch_reaching_6x_naive"],
            "targets": result["targets"],
            "loadavg_before_after": load,
        }
    if name == "dpo":
        return {
            **result["ratios"],
            "median_step_seconds": {k: v["median_step_seconds"] for k, v in result["runs"].items()},
            "peak_rss_mb": {k: v["peak_rss_mb"] for k, v in result["runs"].items()},
            "targets": result["targets"],
            "loadavg_before_after": load,
        }
    if name == "ipo":
        return {
            "shapes": [
                {
                    k: s[k]
                    for k in (
                        "prefix_tokens",
                        "new_tokens",
                        "reuse_vs_fresh",
                        "reencode_vs_fresh",
                        "load",
                    )
                }
                for s in result["shapes"]
            ],
            "targets": result["targets"],
            "loadavg_before_after": load,
        }
    if "skipped" in result:
        return {"skipped": result["skipped"]}
    return {
        "total_seconds": result["total_seconds"],
        "complete": result["complete"],
        "stages": {r["stage"]: r["seconds"] for r in result["stages"]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings: smoke-test the code")
    ap.add_argument("--only", default="generation,dpo,ipo,e2e")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per benchmark")
    ap.add_argument("--run", type=Path, default=None, help="run folder for the e2e report")
    ap.add_argument(
        "--summarize",
        action="store_true",
        help="run nothing: summarize the result files already written (e.g. after running one "
        "benchmark on its own)",
    )
    args = ap.parse_args()
    plan = QUICK if args.quick else FULL
    out_dir = RESULTS / "quick" if args.quick else RESULTS
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    summary: dict[str, Any] = {"quick": args.quick, "results": {}}
    if args.summarize:  # each result carries the load it was measured under
        summary["summarized_from_files"] = True
    else:
        summary["load_before"] = machine_load()
    for name in [x.strip() for x in args.only.split(",") if x.strip()]:
        if name not in plan:
            sys.exit(f"unknown benchmark '{name}' (known: {', '.join(plan)})")
        script, *extra = plan[name]
        out = out_dir / f"{RESULT_FILE[name]}.json"
        cmd = [sys.executable, str(HERE / script), *extra, "--out", str(out)]
        if args.threads and name != "e2e":
            cmd += ["--threads", str(args.threads)]
        if name == "e2e" and args.run:
            cmd += ["--run", str(args.run)]
        if args.summarize:
            if out.is_file():
                summary["results"][name] = headline(name, json.loads(out.read_text()))
            continue
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env)
        seconds = round(time.perf_counter() - start, 1)
        if proc.returncode != 0:
            summary["results"][name] = {"failed": f"exit {proc.returncode}", "seconds": seconds}
            continue
        result = json.loads(out.read_text())
        summary["results"][name] = {**headline(name, result), "seconds": seconds}
    if not args.summarize:
        summary["load_after"] = machine_load()
    path = save("summary", summary, out_dir / "summary.json")
    print("\n=== summary")
    print(json.dumps(summary["results"], indent=2))
    print(f"written: {path}")
    if any("failed" in r for r in summary["results"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
