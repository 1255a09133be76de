"""DPO step time and peak memory, side by side in one run, each variant in its own process:

- ``safelrm``: ``build_dpo_trainer`` with LoRA (reference = the adapter-disabled policy, no second
  copy), ``precompute_ref_log_probs=True`` (reference log-probs computed once, before step 1), and
  its lean RMSNorm/SwiGLU/LoRA forwards and CPU LM-head tile (``safelrm.train.lean``);
- ``trl_full_ref``: TRL's ``DPOTrainer`` with full fine-tuning and a separate reference model
  (a second copy of the weights, one extra forward per step).

Same rows (CoCoNot preference pairs rendered with the model's chat template), batch, max length,
learning rate and steps. Step time = median of the steps after the first (warm-up); peak memory
= the child's VmHWM. Each variant runs ``--repeats`` times, alternating; the ratios compare the
medians (peak RSS moves by 20% between identical runs here). Targets: safelrm <= 0.6x step time
and <= 0.6x peak memory.

    .venv/bin/python benchmarks/dpo_memory.py [--steps 4] [--batch 2] [--max-length 256]
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine, machine_load, peak_rss_mb, ratio, rss_mb, run_child, save, verdict

TARGET = 0.6
VARIANTS = ("safelrm", "trl_full_ref")


def preference_rows(n: int) -> list[dict[str, Any]]:
    """The first ``n`` CoCoNot contrast pairs as DPO rows (``prompt`` as a user message)."""
    from safelrm.data.paths import data_root
    from safelrm.io import read_jsonl

    path = data_root() / "train" / "coconot_contrast_pref" / "coconot_pref.jsonl"
    rows = read_jsonl(path)[:n]
    return [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": r["chosen"],
            "rejected": r["rejected"],
        }
        for r in rows
    ]


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return StepTimer()


def child(
    variant: str, model_spec: str, steps: int, batch: int, max_length: int, knobs: dict
) -> dict:
    """One variant in this process; returns its timings and memory. ``knobs``: optional
    ``gradient_checkpointing`` (both variants); ``lora``, ``lean_layers`` and ``trl_lm_head_tile``
    (safelrm variant)."""
    from datasets import Dataset

    from safelrm.models import load_model
    from safelrm.train import DPOSettings, build_dpo_trainer, render_dpo_rows

    loaded = load_model(model_spec)
    model, tok = loaded.model, loaded.tokenizer
    rows = preference_rows(steps * batch)  # one epoch = `steps` steps
    rss_loaded = rss_mb()
    common = dict(
        max_steps=steps,
        per_device_train_batch_size=batch,
        max_length=max_length,
        learning_rate=5e-5,
        gradient_checkpointing=knobs.get("gradient_checkpointing", False),
    )
    work = Path(tempfile.mkdtemp(prefix=f"safelrm-bench-{variant}-"))
    if variant == "safelrm":
        lora = knobs.get("lora") or {}  # empty: safelrm's default LoRA
        import trl.trainer.utils as trl_utils

        trl_tile = trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE  # before build_lean sets safelrm's
        lean = knobs.get("lean_layers", True)
        settings = DPOSettings(**common, precompute_ref_log_probs=True, lora=lora, lean_layers=lean)
        trainer = build_dpo_trainer(model, tok, rows, settings, work, progress=False)
        if knobs.get("trl_lm_head_tile"):
            trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = trl_tile  # for the training steps
    else:
        from transformers import AutoModelForCausalLM
        from trl import DPOTrainer

        settings = DPOSettings(**common, lora={"enabled": False})
        ref = AutoModelForCausalLM.from_pretrained(loaded.path, dtype=model.dtype).eval()
        trainer = DPOTrainer(
            model=model,
            ref_model=ref,
            args=settings.to_trl(work, progress=False),
            train_dataset=Dataset.from_list(render_dpo_rows(tok, rows)),
            processing_class=tok,
        )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log line to stdout
    timer = step_timer()
    trainer.add_callback(timer)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    timed = timer.seconds[1:] or timer.seconds
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "variant": variant,
        "steps": len(timer.seconds),
        "step_seconds": [round(s, 2) for s in timer.seconds],
        "median_step_seconds": round(statistics.median(timed), 3),
        "train_seconds": round(train_seconds, 2),
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
        "trainable_params": trainable,
        "lora": settings.lora.enabled,
        "precompute_ref_log_probs": settings.precompute_ref_log_probs,
        "separate_ref_model": variant != "safelrm",
        "gradient_checkpointing": settings.gradient_checkpointing,
        "lora_settings": settings.lora.model_dump() if settings.lora.enabled else None,
    }


def summarize(runs: list[dict]) -> dict:
    """One variant's repeated runs: the median of their step times and of their peaks, the runs."""
    return {
        "median_step_seconds": statistics.median(r["median_step_seconds"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "train_seconds": statistics.median(r["train_seconds"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each child")
    ap.add_argument(
        "--gradient-checkpointing", action="store_true", help="on in both variants (as at scale)"
    )
    ap.add_argument(
        "--no-lean-layers",
        action="store_true",
        help="safelrm variant: plain RMSNorm/SwiGLU autograd and PEFT's LoRA forward",
    )
    ap.add_argument(
        "--trl-lm-head-tile",
        action="store_true",
        help="safelrm variant: TRL's 32,768-column LM-head tile instead of safelrm's CPU tile",
    )
    ap.add_argument("--lora-r", type=int, default=None, help="safelrm variant (default: 64)")
    ap.add_argument("--lora-dropout", type=float, default=None, help="(default: 0.05)")
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs of each variant; figures are their medians"
    )
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    lora = {k: v for k, v in (("r", args.lora_r), ("dropout", args.lora_dropout)) if v is not None}
    knobs = {
        "gradient_checkpointing": args.gradient_checkpointing,
        "lora": lora,
        "lean_layers": not args.no_lean_layers,
        "trl_lm_head_tile": args.trl_lm_head_tile,
    }
    if args.child:
        run = child(args.child, args.model, args.steps, args.batch, args.max_length, knobs)
        print(json.dumps(run))
        return

    load_before = machine_load()
    shared = ["--model", args.model, "--steps", str(args.steps), "--batch", str(args.batch)]
    shared += ["--max-length", str(args.max_length)]
    if args.threads:
        shared += ["--threads", str(args.threads)]
    if args.gradient_checkpointing:
        shared += ["--gradient-checkpointing"]
    if args.no_lean_layers:
        shared += ["--no-lean-layers"]
    if args.trl_lm_head_tile:
        shared += ["--trl-lm-head-tile"]
    if args.lora_r is not None:
        shared += ["--lora-r", str(args.lora_r)]
    if args.lora_dropout is not None:
        shared += ["--lora-dropout", str(args.lora_dropout)]
    repeats: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for i in range(args.repeats):  # alternating, so that drifting load hits both alike
        for variant in VARIANTS:
            print(f"dpo_memory: {variant}, run {i + 1}/{args.repeats} ...", file=sys.stderr)
            repeats[variant].append(
                {
                    **run_child([str(Path(__file__)), "--child", variant, *shared]),
                    "load_after": machine_load()["loadavg"],
                }
            )
    runs = {variant: summarize(repeats[variant]) for variant in VARIANTS}
    ours, theirs = runs["safelrm"], runs["trl_full_ref"]
    step_ratio = ratio(ours["median_step_seconds"], theirs["median_step_seconds"])
    mem_ratio = ratio(ours["peak_rss_mb"], theirs["peak_rss_mb"])
    per_repeat = [
        {
            "step_time": ratio(a["median_step_seconds"], b["median_step_seconds"]),
            "peak_memory": ratio(a["peak_rss_mb"], b["peak_rss_mb"]),
        }
        for a, b in zip(repeats["safelrm"], repeats["trl_full_ref"], strict=True)
    ]
    result = {
        "benchmark": "dpo_memory",
        "model": args.model,
        "settings": {
            "steps": args.steps,
            "batch": args.batch,
            "max_length": args.max_length,
            "repeats": args.repeats,
            **knobs,
        },
        "runs": runs,
        "ratios": {
            "step_time_safelrm_over_trl": step_ratio,
            "peak_memory_safelrm_over_trl": mem_ratio,
            "train_time_incl_precompute": ratio(ours["train_seconds"], theirs["train_seconds"]),
            "per_repeat": per_repeat,
        },
        "targets": {
            "step_time": verdict(step_ratio, TARGET, False),
            "peak_memory": verdict(mem_ratio, TARGET, False),
        },
        "machine": machine(),
        # glibc's allocator settings change peak RSS a lot (see benchmarks/README.md)
        "allocator_env": {
            k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k.startswith("THP_")
        },
        "load_before": load_before,
        "load_after": machine_load(),
    }
    path = save("dpo_memory", result, args.out)
    print(json.dumps(result, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
