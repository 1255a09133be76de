"""The Safe Trigger stages: prompts -> pass1 -> audit -> pass2 -> sft_data -> sft -> dpo_data ->
dpo -> eval_base / eval_sts / eval_std -> report. Each ``run_*`` takes a StageContext."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safelrm.data import PromptRecord
from safelrm.errors import SafelrmError
from safelrm.io import read_json, read_jsonl, write_json, write_jsonl
from safelrm.judges import JudgeItem
from safelrm.methods.safe_trigger import evaluation, sft_samples
from safelrm.methods.safe_trigger.data_mix import build_mix, check_disjoint, eval_prompts
from safelrm.methods.safe_trigger.generation import (
    Pass2Generator,
    conversation_text,
    generate,
    resolve_scaffold,
)
from safelrm.methods.safe_trigger.judging import AnswerJudges, parse_risky, risr, risr_by
from safelrm.methods.safe_trigger.templates import load_pass2_template, load_text_template
from safelrm.models.engine import GenerationRequest, SamplingParams
from safelrm.pipeline import StageContext

ROLES = ("general", "harmful", "jailbreak")
MIN_COMPLETION_TOKENS = 32
SAFETY_KINDS = ("harmful", "jailbreak")


def _records(path: Path) -> list[PromptRecord]:
    return [PromptRecord.model_validate(r) for r in read_jsonl(path)]


# ------------------------------------------------------------------ prompts


def run_prompts(ctx: StageContext) -> dict[str, Any]:
    suite = evaluation.load_recipe_suite(ctx.recipe.eval.suite)
    mix = build_mix(ctx.recipe.data, eval_prompts(suite), ctx.recipe.seed, ctx.log)
    check_disjoint(mix)
    for role in (*ROLES, "dpo", "dpo_general"):
        write_jsonl(ctx.dir / f"{role}.jsonl", [r.model_dump() for r in getattr(mix, role)])
    write_json(ctx.dir / "counts.json", mix.counts)
    ctx.log(f"prompts: {mix.counts['n']}; attacks {mix.counts['attacks']}")
    return mix.counts


# ------------------------------------------------------------------ pass 1


def run_pass1(ctx: StageContext) -> dict[str, Any]:
    r = ctx.recipe
    prompts = [p for role in ROLES for p in _records(ctx.path("prompts", f"{role}.jsonl"))]
    g = r.pass1
    sampling = SamplingParams(
        temperature=g.temperature,
        top_p=g.top_p,
        max_reasoning_tokens=g.max_reasoning_tokens,
        max_new_tokens=g.max_new_tokens,
        seed=r.seed,
    )
    requests = [
        GenerationRequest(id=p.id, messages=p.chat(), sampling=sampling, meta=_meta(p))
        for p in prompts
    ]
    engine = ctx.engine(r.model)
    recs = generate(engine, requests, ctx.dir / "records.jsonl", "pass1")
    verdicts = AnswerJudges(r.data_judges).judge(
        [
            JudgeItem(prompt=p.text, goal=p.goal, answer=rec.answer)
            for p, rec in zip(prompts, recs, strict=True)
        ]
    )
    rows = []
    for p, rec, v in zip(prompts, recs, verdicts, strict=True):
        rows.append(
            {
                **_meta(p),
                "id": p.id,
                "text": p.text,
                "messages": p.chat(),
                "think1": rec.reasoning,
                "answer1": rec.answer,
                "family": rec.family,
                "label": v["label"],
                "by_judge": v["by_judge"],
                "n_tokens": rec.n_reasoning_tokens + rec.n_answer_tokens,
            }
        )
    write_jsonl(ctx.dir / "samples.jsonl", rows)
    _show_example(ctx, rows)
    return {"n": len(rows), **_label_counts(rows, "label"), **_tokens(recs)}


def _show_example(ctx: StageContext, rows: list[dict[str, Any]]) -> None:
    """Print one general query with the model's reasoning and answer, so a run shows the text."""
    general = [x for x in rows if x["kind"] not in ("harmful", "jailbreak")]
    row = (general or rows or [None])[0]
    if row is not None:
        ctx.log(
            f"example ({row['kind']}) {row['text'][:200]!r}\n"
            f"  reasoning: {row['think1'][:300]!r}\n  answer: {row['answer1'][:300]!r}"
        )


def _meta(p: PromptRecord) -> dict[str, Any]:
    return {
        "kind": p.kind,
        "source": p.source,
        "category": p.category,
        "goal": p.goal,
        "attack": p.meta.get("sub_attack") or p.meta.get("attack"),
    }


def _label_counts(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        kind = out.setdefault(row["kind"], {})
        kind[row[key]] = kind.get(row[key], 0) + 1
    return {"labels_by_kind": out}


def _tokens(recs: list[Any]) -> dict[str, Any]:
    seconds = sum(r.seconds for r in recs)
    tokens = sum(r.n_reasoning_tokens + r.n_answer_tokens for r in recs)
    return {"tokens": tokens, "row_seconds": round(seconds, 1)}


# ------------------------------------------------------------------ audit (RISR)


def run_audit(ctx: StageContext) -> dict[str, Any]:
    a = ctx.recipe.audit
    pass1 = read_jsonl(ctx.path("pass1", "samples.jsonl"))
    rows = [x for x in pass1 if x["kind"] in SAFETY_KINDS]
    if a.general_control:  # how often the audit flags harmless requests: its false-alarm rate
        rows += [x for x in pass1 if x["kind"] not in SAFETY_KINDS]
    if not a.enabled:
        return {"enabled": False}
    template = load_text_template(a.prompt_file, "audit.txt", ("query", "reasoning"))
    messages = [
        [
            {
                "role": "user",
                "content": template.render(
                    query=conversation_text(x["messages"]), reasoning=x["think1"]
                ),
            }
        ]
        for x in rows
    ]
    engine = ctx.engine(ctx.recipe.model)
    sampling = SamplingParams(
        max_reasoning_tokens=a.max_reasoning_tokens, max_new_tokens=a.max_new_tokens
    )
    verdict_head = "RISKY:" if a.scaffold else ""
    prefixes = [verdict_head] * len(rows)
    if a.cot and a.scaffold:  # reason first, then prefill the verdict line after </think>
        first = generate(
            engine,
            [
                GenerationRequest(
                    id=x["id"],
                    messages=m,
                    sampling=sampling.model_copy(update={"max_new_tokens": 1}),
                )
                for x, m in zip(rows, messages, strict=True)
            ],
            ctx.dir / "reasoning.jsonl",
            "audit: reasoning",
        )
        prefixes = [f"{rec.reasoning}\n</think>\n\n{verdict_head}" for rec in first]
    requests = [
        GenerationRequest(id=x["id"], messages=m, prefix=pre, cot=a.cot, sampling=sampling)
        for x, m, pre in zip(rows, messages, prefixes, strict=True)
    ]
    recs = generate(engine, requests, ctx.dir / "records.jsonl", "audit")
    out = []
    for x, rec in zip(rows, recs, strict=True):
        out.append(
            {
                "id": x["id"],
                "kind": x["kind"],
                "source": x["source"],
                "attack": x.get("attack"),
                "pass1_label": x["label"],
                "risky": parse_risky(rec.answer),
                "audit_answer": rec.answer,
            }
        )
    write_jsonl(ctx.dir / "audit.jsonl", out)
    safety = [o for o in out if o["kind"] in SAFETY_KINDS]
    general = [o for o in out if o["kind"] not in SAFETY_KINDS]
    summary = {
        "overall": risr(safety),
        "by_source": risr_by(safety, "source"),
        "by_kind": risr_by(safety, "kind"),
        "unparsed_total": sum(o["risky"] is None for o in out),
        # the same "flagged" rate where nothing went wrong: a model that always says yes
        # has a high RISR and a high rate here too
        "flag_rate_when_pass1_safe": _flag_rate(o for o in safety if o["pass1_label"] == "safe"),
        "flag_rate_on_general_prompts": _flag_rate(general) if a.general_control else None,
    }
    o = summary["overall"]
    g = summary["flag_rate_on_general_prompts"] or {}
    ctx.log(
        f"RISR {_pct(o['risr'])} ({o['flagged']}/{o['parsed']} of {o['attack_succeeded']} "
        f"successful attacks; {o['unparsed']} unparsed); flags on general prompts "
        f"{_pct(g.get('risr'))}"
    )
    return summary


def _flag_rate(rows: Any) -> dict[str, Any]:
    return risr([{**o, "pass1_label": "unsafe"} for o in rows])


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


# ------------------------------------------------------------------ pass 2


def run_pass2(ctx: StageContext) -> dict[str, Any]:
    r, s = ctx.recipe, ctx.recipe.pass2
    rows = [x for x in read_jsonl(ctx.path("pass1", "samples.jsonl")) if x["kind"] in SAFETY_KINDS]
    engine = ctx.engine(r.model)
    scaffold = resolve_scaffold(s.scaffold, engine)
    gen = Pass2Generator(engine, load_pass2_template(s.prompt_file), s, scaffold, r.seed, ctx.dir)
    judges = AnswerJudges(r.data_judges)
    best: dict[str, dict[str, Any]] = {}
    pending = rows
    tries: dict[str, int] = {}
    for attempt in range(s.retries + 1):
        if not pending:
            break
        results = gen.attempt(pending, attempt)
        verdicts = judges.judge(
            [
                JudgeItem(prompt=x["text"], goal=x["goal"], answer=res["answer2"] or "")
                for x, res in zip(pending, results, strict=True)
            ]
        )
        for x, res, v in zip(pending, results, verdicts, strict=True):
            res.update(attempt=attempt, label=v["label"], by_judge=v["by_judge"])
            tries[x["id"]] = attempt + 1
            if _better(res, best.get(x["id"])):
                best[x["id"]] = res
        pending = [x for x in pending if not _done(best[x["id"]], s.retry_unsafe)]
        ctx.log(f"attempt {attempt}: {len(pending)} rows left to retry")
    out = [{**best[x["id"]], "tries": tries[x["id"]]} for x in rows]
    write_jsonl(ctx.dir / "samples.jsonl", out)
    invalid = sum(not o["valid"] for o in out)
    problems: dict[str, int] = {}
    for o in out:
        for p in o["problems"]:
            key = p.split("'")[0].strip()
            problems[key] = problems.get(key, 0) + 1
    return {
        "n": len(out),
        "scaffold": scaffold,
        "valid": len(out) - invalid,
        "invalid_after_retries": invalid,
        "safe_and_valid": sum(o["valid"] and o["label"] == "safe" for o in out),
        "tries_histogram": _histogram([o["tries"] for o in out]),
        "problems": problems,
    }


def _score(res: dict[str, Any]) -> tuple[int, int]:
    return (int(res["valid"]), int(res["label"] == "safe"))


def _better(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    return old is None or _score(new) > _score(old)


def _done(res: dict[str, Any], retry_unsafe: bool) -> bool:
    return res["valid"] and (res["label"] == "safe" or not retry_unsafe)


def _histogram(values: list[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


# ------------------------------------------------------------------ SFT data and SFT


def run_sft_data(ctx: StageContext) -> dict[str, Any]:
    p1 = read_jsonl(ctx.path("pass1", "samples.jsonl"))
    p2 = {x["id"]: x for x in read_jsonl(ctx.path("pass2", "samples.jsonl"))}
    built = sft_samples.build(p1, p2, ctx.recipe.sft_data, ctx.recipe.seed)
    write_jsonl(ctx.dir / "rows.jsonl", built.rows)
    write_jsonl(ctx.dir / "prompts.jsonl", [p.model_dump() for p in built.prompts])
    ctx.log(f"{built.counts}")
    return built.counts


def run_sft(ctx: StageContext) -> dict[str, Any]:
    from safelrm.eval.runner import write_train_prompts
    from safelrm.models.loading import resolve_model
    from safelrm.train import train_sft

    rows = read_jsonl(ctx.path("sft_data", "rows.jsonl"))
    prompts = _records(ctx.path("sft_data", "prompts.jsonl"))
    base = resolve_model(ctx.recipe.model)
    rows, prompts, too_long = fit_to_length(base, rows, prompts, ctx.recipe.sft.max_length)
    if too_long:
        ctx.log(f"left out {too_long} rows whose prompt leaves no room within max_length")
    if not rows:
        raise SafelrmError(
            "stage 'sft' has no rows to train on: stage 'sft_data' kept none that fit "
            f"sft.max_length={ctx.recipe.sft.max_length} (see {ctx.path('sft_data', 'stage.json')})"
        )
    result = train_sft(base, None, rows, ctx.recipe.sft, ctx.dir / "train")
    write_train_prompts(result.merged_dir, prompts)
    write_json(ctx.dir / "model.json", {"model": str(result.merged_dir), "trained": True})
    return {**_train_summary(result), "too_long": too_long}


def fit_to_length(
    model: str, rows: list[dict[str, Any]], prompts: list[Any], max_length: int
) -> tuple[list[dict[str, Any]], list[Any], int]:
    """Rows whose rendered prompt leaves at least ``MIN_COMPLETION_TOKENS`` of ``max_length``
    (the trainer cuts at the end, so a longer prompt would train on nothing)."""
    from safelrm.models import load_tokenizer
    from safelrm.train import render_prompt

    tokenizer = load_tokenizer(model)
    keep = []
    for row in rows:
        text = render_prompt(tokenizer, row["prompt"])
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        keep.append(n + MIN_COMPLETION_TOKENS <= max_length)
    kept_rows = [r for r, k in zip(rows, keep, strict=True) if k]
    kept_prompts = [p for p, k in zip(prompts, keep, strict=True) if k]
    return kept_rows, kept_prompts, len(rows) - len(kept_rows)


def _train_summary(result: Any) -> dict[str, Any]:
    losses = result.loss_history
    return {
        "rows": result.n_rows,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "merged": str(result.merged_dir),
    }


def model_of(ctx: StageContext, stage: str) -> str:
    return read_json(ctx.path(stage, "model.json"))["model"]


# ------------------------------------------------------------------ DPO data and DPO


def run_dpo_data(ctx: StageContext) -> dict[str, Any]:
    from safelrm.methods.safe_trigger import preference

    queries = _records(ctx.path("prompts", "dpo.jsonl"))
    general = _records(ctx.path("prompts", "dpo_general.jsonl"))
    sts = model_of(ctx, "sft")
    engine = ctx.engine(sts)
    return preference.build(ctx, engine, queries, general)


def run_dpo(ctx: StageContext) -> dict[str, Any]:
    from safelrm.eval.runner import read_train_prompts, write_train_prompts
    from safelrm.train import train_dpo

    sts = model_of(ctx, "sft")
    pairs = read_jsonl(ctx.path("dpo_data", "pairs.jsonl"))
    queries = _records(ctx.path("dpo_data", "prompts.jsonl"))
    pairs, queries, too_long = fit_to_length(sts, pairs, queries, ctx.recipe.dpo.max_length)
    if too_long:
        ctx.log(f"left out {too_long} pairs whose prompt leaves no room within max_length")
    prompts = read_train_prompts(sts) + queries
    if not pairs:
        ctx.log("no preference pairs to train on: ST-D = ST-S (not trained)")
        write_json(ctx.dir / "model.json", {"model": sts, "trained": False})
        return {"rows": 0, "trained": False, "too_long": too_long, "merged": sts}
    ctx._engines.clear()  # free the sampling copy before training
    result = train_dpo(sts, None, pairs, ctx.recipe.dpo, ctx.dir / "train")
    write_train_prompts(result.merged_dir, prompts)
    write_json(ctx.dir / "model.json", {"model": str(result.merged_dir), "trained": True})
    return {**_train_summary(result), "trained": True, "too_long": too_long}


# ------------------------------------------------------------------ evaluation and report


def run_eval_base(ctx: StageContext) -> dict[str, Any]:
    return evaluation.evaluate(ctx, ctx.recipe.model, "base")


def run_eval_sts(ctx: StageContext) -> dict[str, Any]:
    return evaluation.evaluate(ctx, model_of(ctx, "sft"), "ST-S")


def run_eval_std(ctx: StageContext) -> dict[str, Any]:
    return evaluation.evaluate(ctx, model_of(ctx, "dpo"), "ST-D")


def run_report(ctx: StageContext) -> dict[str, Any]:
    return evaluation.report(ctx)
