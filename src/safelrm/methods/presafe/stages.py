"""The PreSafe stages: teacher -> classifier -> responses -> eval_base -> train -> eval_presafe
-> norms -> report. Each reads its inputs from earlier stages' folders (see ``__init__``)."""

from __future__ import annotations

import time
from typing import Any

from safelrm.data import PromptRecord
from safelrm.io import read_json, read_jsonl, write_json, write_jsonl
from safelrm.methods.presafe.config import PreSafeRecipe
from safelrm.pipeline import StageContext
from safelrm.store import RecordStore

PROMPTS_FILE = "prompts.jsonl"
TEACHER_FILE = "teacher.jsonl"
SOFT_FILE = "soft_labels.jsonl"
ROWS_FILE = "sft_rows.jsonl"
DECISION_HINT = (
    " (teacher.decision=teacher; a policy that rarely refuses with CoT off gives a weak teacher: "
    "`--set teacher.decision=teacher_or_kind` also refuses on harmful-set prompts)"
)


def validate_recipe(recipe: PreSafeRecipe) -> dict[str, Any]:
    """Bad inputs that can be seen before any work: the classifier id, the head layer, the
    response templates. One line each (SafelrmError)."""
    from transformers import AutoConfig

    from safelrm.methods.presafe.classifier import check_classifier_model
    from safelrm.methods.presafe.head import resolve_layers
    from safelrm.methods.presafe.responses import load_templates
    from safelrm.models import resolve_model

    check_classifier_model(recipe.classifier.model)
    config = AutoConfig.from_pretrained(resolve_model(recipe.model))
    n_layers = config.get_text_config().num_hidden_layers
    layers = resolve_layers(recipe.head.layer, recipe.head.mean_last, n_layers)
    load_templates(recipe.responses.templates)
    return {"n_layers": n_layers, "head_layers": layers}


def _prompts(ctx: StageContext) -> list[PromptRecord]:
    return [PromptRecord.model_validate(r) for r in read_jsonl(ctx.path("teacher", PROMPTS_FILE))]


def _sampling(recipe: PreSafeRecipe, **budget: int) -> Any:
    from safelrm.models import SamplingParams

    return SamplingParams(temperature=0.0, seed=recipe.seed, **budget)


# ------------------------------------------------------------------ teacher


def run_teacher(ctx: StageContext) -> dict[str, Any]:
    from safelrm.eval.runner import load_suite_prompts
    from safelrm.eval.suites import load_suite
    from safelrm.methods.presafe.data import is_harmful, load_training_prompts
    from safelrm.methods.presafe.teacher import judge_refusals, refusal_summary
    from safelrm.models import GenerationRequest

    r: PreSafeRecipe = ctx.recipe
    checked = validate_recipe(r)
    eval_prompts, _ = load_suite_prompts(load_suite(r.eval.suite))
    prompts, counts = load_training_prompts(r.data, r.seed, eval_prompts)
    write_jsonl(ctx.dir / PROMPTS_FILE, [p.model_dump() for p in prompts])
    ctx.log(
        f"{counts['harmful']} harmful + {counts['benign']} benign prompts "
        f"({counts['dropped_overlap']} dropped as eval overlaps); teacher = CoT off"
    )
    sampling = _sampling(r, max_new_tokens=r.teacher.max_new_tokens)
    requests = [
        GenerationRequest(id=p.id, messages=p.chat(), cot=False, sampling=sampling) for p in prompts
    ]
    store = RecordStore(ctx.dir / "records.jsonl", {"model": r.model, **sampling.model_dump()})
    start = time.perf_counter()
    engine = ctx.engine(r.model)
    records = engine.generate(requests, store=store, description="teacher (CoT off)")
    seconds = time.perf_counter() - start
    answers = [rec.answer for rec in records]
    labels, raw = judge_refusals(prompts, answers, r.teacher.judge)
    rows = [
        {
            "id": p.id,
            "text": p.text,
            "group": "harmful" if is_harmful(p) else "benign",
            "source": p.source,
            "answer": a,
            "teacher_label": y,
            "judges": {name: raw[name][i] for name in raw},
        }
        for i, (p, a, y) in enumerate(zip(prompts, answers, labels, strict=True))
    ]
    write_jsonl(ctx.dir / TEACHER_FILE, rows)
    summary = refusal_summary(rows, "teacher_label")
    ctx.log(
        f"teacher refusal rate (CoT off, judge={r.teacher.judge}): "
        f"harmful {_pct(summary['harmful']['refusal_rate'])}, "
        f"benign {_pct(summary['benign']['refusal_rate'])}"
    )
    tokens = sum(rec.n_answer_tokens for rec in records)
    return {
        **counts,
        **checked,
        "judge": r.teacher.judge,
        "teacher_refusals": summary,
        "generation_seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


# ------------------------------------------------------------------ classifier


def run_classifier(ctx: StageContext) -> dict[str, Any]:
    from safelrm.methods.presafe.classifier import check_classifier_model, check_labels, cross_fit
    from safelrm.methods.presafe.teacher import decide, refusal_summary

    r: PreSafeRecipe = ctx.recipe
    rows = read_jsonl(ctx.path("teacher", TEACHER_FILE))
    mode = r.teacher.decision
    for row in rows:
        row["target"] = decide(row["teacher_label"], row["group"] == "harmful", mode)
    check_classifier_model(r.classifier.model)
    hint = DECISION_HINT if mode == "teacher" else f" (teacher.decision={mode})"
    check_labels([row["target"] for row in rows], hint)
    texts = [row["text"] if r.classifier.input == "query" else row["answer"] for row in rows]
    ctx.log(
        f"{r.classifier.method} classifier on the {r.classifier.input} "
        f"({r.classifier.model}), target = {mode}"
    )
    soft, folds, metrics = cross_fit(
        texts, [row["target"] for row in rows], r.classifier, r.seed, ctx.log
    )
    out = [
        {
            "id": row["id"],
            "group": row["group"],
            "target": row["target"],
            "soft_label": s,
            "fold": f,
        }
        for row, s, f in zip(rows, soft, folds, strict=True)
    ]
    write_jsonl(ctx.dir / SOFT_FILE, out)
    mean_soft = {
        g: sum(o["soft_label"] for o in out if o["group"] == g)
        / max(1, sum(o["group"] == g for o in out))
        for g in ("harmful", "benign")
    }
    ctx.log(
        f"cross-fitted accuracy {metrics['cv_accuracy']:.3f}, AUC {metrics['cv_auc']:.3f}; mean "
        f"p(refuse): harmful {mean_soft['harmful']:.3f}, benign {mean_soft['benign']:.3f}"
    )
    return {
        "decision": mode,
        "input": r.classifier.input,
        "method": r.classifier.method,
        "targets": refusal_summary(out, "target"),
        "mean_soft_label": mean_soft,
        **metrics,
    }


# ------------------------------------------------------------------ responses


def run_responses(ctx: StageContext) -> dict[str, Any]:
    from safelrm.methods.presafe.data import is_harmful
    from safelrm.methods.presafe.responses import decision_first, load_templates, sft_row
    from safelrm.models import GenerationRequest

    r: PreSafeRecipe = ctx.recipe
    prompts = _prompts(ctx)
    templates = load_templates(r.responses.templates)
    engine = ctx.engine(r.model)
    family = engine.family
    sampling = _sampling(
        r,
        max_new_tokens=r.responses.max_new_tokens,
        max_reasoning_tokens=r.responses.max_reasoning_tokens,
    )
    benign = [p for p in prompts if not is_harmful(p)]
    requests = [
        GenerationRequest(id=p.id, messages=p.chat(), cot=True, sampling=sampling) for p in benign
    ]
    store = RecordStore(ctx.dir / "records.jsonl", {"model": r.model, **sampling.model_dump()})
    records = {
        rec.id: rec for rec in engine.generate(requests, store=store, description="benign (CoT on)")
    }
    rows = []
    for p in prompts:
        if is_harmful(p):
            reasoning, answer = decision_first(p.id, templates, r.seed)
            completion = family.format_response(reasoning, answer)
            rows.append(sft_row(p.id, p.chat(), completion, "harmful"))
        else:
            rows.append(sft_row(p.id, p.chat(), records[p.id].completion(), "benign"))
    write_jsonl(ctx.dir / ROWS_FILE, rows)
    n_harm = sum(row["group"] == "harmful" for row in rows)
    return {
        "family": family.name,
        "opener": family.reasoning_opener,
        "harmful_decision_first": n_harm,
        "benign_self_generated": len(rows) - n_harm,
    }


# ------------------------------------------------------------------ train


def run_train(ctx: StageContext) -> dict[str, Any]:
    from safelrm.eval.runner import write_train_prompts
    from safelrm.methods.presafe.trainer import train_presafe

    r: PreSafeRecipe = ctx.recipe
    validate_recipe(r)  # a bad head layer fails here, before the model is loaded
    soft = {row["id"]: row["soft_label"] for row in read_jsonl(ctx.path("classifier", SOFT_FILE))}
    rows = [
        {**row, "soft_label": soft[row["id"]]}
        for row in read_jsonl(ctx.path("responses", ROWS_FILE))
    ]
    opener = ctx.summary("responses").get("opener") or "<think>\n"
    result, head_dir = train_presafe(r.model, None, rows, r.train, r.head, ctx.dir, opener=opener)
    write_train_prompts(result.merged_dir, _prompts(ctx))
    log = _train_log(result.log_path)
    leaked = head_keys_in_export(result.merged_dir)
    ctx.log(
        f"{result.steps} steps in {result.seconds:.0f} s; head loss "
        f"{log.get('head_loss_first')} -> {log.get('head_loss_last')}"
    )
    return {
        "steps": result.steps,
        "seconds": result.seconds,
        "n_rows": result.n_rows,
        "merged": str(result.merged_dir),
        "adapter": str(result.adapter_dir) if result.adapter_dir else None,
        "head": str(head_dir),
        "head_keys_in_export": leaked,
        **log,
    }


def _train_log(path: Any) -> dict[str, Any]:
    from safelrm.io import read_json

    steps = read_json(path)["log"]
    out: dict[str, Any] = {}
    for key in ("loss", "lm_loss", "head_loss", "head_agreement"):
        values = [s[key] for s in steps if key in s]
        if values:
            k = max(1, len(values) // 4)  # first/last quarter means: single steps are noisy
            out[f"{key}_first"] = round(sum(values[:k]) / k, 4)
            out[f"{key}_last"] = round(sum(values[-k:]) / k, 4)
    return out


def head_keys_in_export(model_dir: Any) -> list[str]:
    """Weight names in the exported model that belong to no base architecture: the head's."""
    from pathlib import Path

    from safetensors import safe_open

    keys: list[str] = []
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            keys += [k for k in st.keys() if "head" in k and "lm_head" not in k]
    return keys


# ------------------------------------------------------------------ eval


def _eval(ctx: StageContext, model: str) -> dict[str, Any]:
    from safelrm.eval.runner import run_eval_cot

    r: PreSafeRecipe = ctx.recipe
    results = run_eval_cot(
        model,
        r.eval.suite,
        r.eval.judges,
        ctx.dir,
        cots=("on", "off"),
        backend=r.generation.backend,
        batch_size=r.generation.batch_size,
        engine=ctx.engine(model),
        limit=r.eval.limit,
    )
    return {label: headline(res, r.eval.judges) for label, res in results.items()}


def run_eval_base(ctx: StageContext) -> dict[str, Any]:
    return _eval(ctx, ctx.recipe.model)


def run_eval_presafe(ctx: StageContext) -> dict[str, Any]:
    return _eval(ctx, str(ctx.path("train", "merged")))


def headline(results: dict[str, Any], judges: list[str]) -> dict[str, Any]:
    """The figures the report compares, with CIs: ASR (harmful, jailbreak), over-refusal, math."""
    overall = results.get("overall", {})
    out: dict[str, Any] = {}
    for judge in judges:
        for group, key in (
            ("harmful", "answer_asr"),
            ("jailbreak", "answer_asr"),
            ("benign", "over_refusal"),
        ):
            m = overall.get(group, {}).get(judge, {}).get(key)
            if m:
                out[f"{group}_{key}/{judge}"] = _rate(m["pooled"])
    if "math_accuracy" in overall:
        out["math_accuracy"] = _rate(overall["math_accuracy"])
    run = results.get("run", {})
    out["tokens_per_second"] = run.get("tokens_per_second")
    return out


def _rate(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("value", "low", "high", "n")}


# ------------------------------------------------------------------ norms and report


def run_norms(ctx: StageContext) -> dict[str, Any]:
    from safelrm.methods.presafe.norms import write_norms

    adapter = ctx.run_dir / "train" / "adapter"
    if not adapter.is_dir():
        ctx.log("no LoRA adapter (full fine-tuning): nothing to measure")
        return {"skipped": "full fine-tuning"}
    result = write_norms(adapter, ctx.dir)
    s = result["summary"]
    ctx.log(f"modules by mean update ({s['metric']}): {', '.join(s['ranking'])}")
    return {"summary": s, "plots": result["plots"]}


def run_report(ctx: StageContext) -> dict[str, Any]:
    from safelrm.eval.paired import load_rows
    from safelrm.eval.runner import compare, load_results
    from safelrm.methods.presafe.report import write_presafe_report

    folders = {
        f"{name} CoT {cot}": ctx.path(stage, f"cot-{cot}")
        for name, stage in (("base", "eval_base"), ("PreSafe", "eval_presafe"))
        for cot in ("on", "off")
    }
    results = {label: load_results(folder) for label, folder in folders.items()}
    rows = {label: load_rows(folder) or [] for label, folder in folders.items()}
    pairs = [(f"base CoT {cot}", f"PreSafe CoT {cot}") for cot in ("on", "off")]
    paths = compare(
        results,
        ctx.dir,
        title=f"PreSafe on {ctx.recipe.model}: base vs PreSafe, CoT on/off",
        rows_by_label=rows,
        pairs=pairs,
    )
    paired = read_json(paths["paired"]) if "paired" in paths else []
    summaries = {
        s: ctx.summary(s)
        for s in ("teacher", "classifier", "responses", "train", "norms")
        if (ctx.run_dir / s / "stage.json").is_file()
    }
    times = {}
    for stage in ctx.method.stages:
        state_path = ctx.run_dir / stage.name / "stage.json"
        if state_path.is_file() and stage.name != "report":
            times[stage.name] = read_json(state_path).get("seconds")
    table = {label: headline(res, ctx.recipe.eval.judges) for label, res in results.items()}
    path = write_presafe_report(ctx.dir, ctx.recipe, table, summaries, times, paired)
    write_json(
        ctx.dir / "presafe_summary.json", {"headline": table, "stages": summaries, "seconds": times}
    )
    ctx.log(f"report: {path}")
    return {"headline": table, "stage_seconds": times}
