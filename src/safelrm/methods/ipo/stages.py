"""IPO's stages: rollouts -> intervene -> overrefusal -> pairs -> train (+ ablations) -> evals
-> report. Each writes into ``ctx.dir``; long loops append to RecordStores and resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from safelrm.errors import SafelrmError
from safelrm.io import read_jsonl, write_json, write_jsonl
from safelrm.methods.ipo.config import IPORecipe
from safelrm.methods.ipo.intervene import (
    Budget,
    Task,
    detect_cues,
    judge_interventions,
    make_task,
    reasoning_sentences,
    run_tasks,
)
from safelrm.pipeline import StageContext
from safelrm.store import RecordStore

ROLLOUTS = "rollouts.jsonl"
VERDICTS = "verdicts.jsonl"


def _recipe(ctx: StageContext) -> IPORecipe:
    return ctx.recipe


def _policy(ctx: StageContext) -> Any:
    return ctx.engine(_recipe(ctx).model)


def _judge(recipe: IPORecipe) -> Any:
    from safelrm.methods.ipo.judging import TrajectoryJudge

    j = recipe.judge
    return TrajectoryJudge(j.reasoning, j.answer, j.options)


def _rate(count: int, n: int) -> float | None:
    return round(count / n, 4) if n else None


# ------------------------------------------------------------------ rollouts


def eval_prompts(recipe: IPORecipe) -> dict[str, list[Any]]:
    """Every prompt of the evaluation suite (no limit), for the overlap check."""
    from safelrm.eval.runner import load_suite_prompts
    from safelrm.eval.suites import load_suite

    prompts, _ = load_suite_prompts(load_suite(recipe.eval.suite))
    return prompts


def training_prompts(recipe: IPORecipe) -> tuple[list[Any], dict[str, Any]]:
    """The harmful training prompts, overlap with the eval suite removed, then ``n`` drawn."""
    from safelrm.data import combine, filter_overlapping, load_prompts, load_train_set, subsample

    s = recipe.rollouts
    loaded = combine(
        *(
            load_train_set(name, s.paths[name]) if name in s.paths else load_prompts(name)
            for name in s.sets
        )
    )
    kept = filter_overlapping(loaded, eval_prompts(recipe), jaccard=s.overlap_jaccard)
    drawn = subsample(kept, s.n, s.seed)
    return drawn, {"loaded": len(loaded), "overlap_dropped": len(loaded) - len(kept)}


def run_rollouts(ctx: StageContext) -> dict[str, Any]:
    from safelrm.models import GenerationRequest, SamplingParams

    recipe = _recipe(ctx)
    s = recipe.rollouts
    prompts, counts = training_prompts(recipe)
    write_jsonl(ctx.dir / "prompts.jsonl", [p.model_dump(exclude_none=True) for p in prompts])
    ctx.log(
        f"{len(prompts)} prompts ({counts['overlap_dropped']} of {counts['loaded']} dropped "
        "for overlap with the eval suite)"
    )
    sampling = SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=s.max_new_tokens,
        max_reasoning_tokens=s.max_reasoning_tokens,
        seed=recipe.seed,
    )
    requests = [
        GenerationRequest(
            id=p.id,
            messages=p.chat(),
            prefix=p.prefix or "",
            sampling=sampling,
            meta={"request": p.text, "goal": p.goal, "prompt_record": p.model_dump()},
        )
        for p in prompts
    ]
    engine = _policy(ctx)
    store = RecordStore(ctx.dir / ROLLOUTS, {"model": recipe.model, **s.model_dump(mode="json")})
    records = [r.model_dump() for r in engine.generate(requests, store, description="rollouts")]
    statuses = judge_rollouts(recipe, records, ctx.dir / VERDICTS)
    count = Counter(statuses.values())
    verdicts = {r["key"]: r for r in read_jsonl(ctx.dir / VERDICTS)}
    judged = [v for v in verdicts.values() if v["status"] != "no_reasoning"]
    tokens = sum(r["n_reasoning_tokens"] + r["n_answer_tokens"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    return {
        **counts,
        "prompts": len(prompts),
        "rollouts": len(records),
        "status": dict(count),
        "reasoning_harm": _rate(sum(v["reasoning"]["flagged"] for v in judged), len(judged)),
        "answer_harm": _rate(sum(v["answer"]["flagged"] for v in verdicts.values()), len(records)),
        "tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
    }


def judge_rollouts(recipe: IPORecipe, records: list[dict[str, Any]], path: Path) -> dict[str, str]:
    """Judge reasoning and answer of every rollout (resumable); status by record key."""
    from safelrm.methods.ipo.judging import item

    store = RecordStore(path, recipe.judge.model_dump(mode="json"))
    todo = [r for r in records if r["key"] not in store]
    if todo:
        items = [
            item(r["meta"]["request"], r["reasoning"], r["answer"], r["meta"].get("goal"), r["key"])
            for r in todo
        ]
        verdicts = _judge(recipe).judge(items)
        store.append(
            {
                "key": r["key"],
                **v.to_json(),
                "reasoning": {**v.to_json()["reasoning"], "flagged": v.reasoning.flagged},
                "answer": {**v.to_json()["answer"], "flagged": v.answer.flagged},
            }
            for r, v in zip(todo, verdicts, strict=True)
        )
    return {r["key"]: store.get(r["key"])["status"] for r in records}  # type: ignore[index]


# ------------------------------------------------------------------ intervene


def make_detector(recipe: IPORecipe, ctx: StageContext) -> Any:
    from safelrm.methods.ipo import detector as det

    d = recipe.detector
    if d.backend == "lexical":
        return det.LexicalDetector(d.markers_file)
    if d.backend == "policy":
        complete = det.engine_completer(_policy(ctx), d.max_new_tokens)
    elif d.backend == "hf":
        from safelrm.models import make_engine

        g = recipe.generation
        judge_engine = make_engine(str(d.model), backend="hf", batch_size=g.batch_size)
        complete = det.engine_completer(judge_engine, d.max_new_tokens)
    else:
        complete = det.endpoint_completer(
            str(d.base_url), str(d.model), d.api_key_env, d.max_new_tokens, d.timeout_s
        )
    return det.LLMDetector(complete, f"llm-{d.backend}", d.prompt_file)


def load_triggers(recipe: IPORecipe) -> list[str]:
    from safelrm.methods.ipo.detector import data_lines

    i = recipe.intervene
    triggers = list(i.triggers) if i.triggers else data_lines("triggers.txt", i.triggers_file)
    triggers = [t.strip() for t in triggers if t.strip()]
    if not triggers:
        raise SafelrmError(f"{i.triggers_file or 'intervene.triggers'}: no trigger sentences")
    return triggers


def _trajectory(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "rollout_key": rec["key"],
        "prompt_id": rec["id"],
        "messages": rec["messages"],
        "prompt": rec["prompt"],
        "request": rec["meta"]["request"],
        "goal": rec["meta"].get("goal"),
        "reasoning": rec["reasoning"],
        "answer": rec["answer"],
    }


def run_intervene(ctx: StageContext) -> dict[str, Any]:
    recipe = _recipe(ctx)
    s, iv = recipe.rollouts, recipe.intervene
    records = read_jsonl(ctx.path("rollouts", ROLLOUTS))
    verdicts = {v["key"]: v for v in read_jsonl(ctx.path("rollouts", VERDICTS))}
    unsafe = [r for r in records if verdicts[r["key"]]["status"] == "unsafe"]
    engine = _policy(ctx)
    detector = make_detector(recipe, ctx)
    triggers = load_triggers(recipe)
    judge = _judge(recipe)
    kv = iv.kv_reuse == "on" or (iv.kv_reuse == "auto" and recipe.generation.backend == "hf")
    budget = Budget(
        max_reasoning_tokens=iv.max_reasoning_tokens or s.max_reasoning_tokens,
        max_new_tokens=iv.max_new_tokens or s.max_new_tokens,
        temperature=s.temperature,
        top_p=s.top_p,
        seed=recipe.seed,
    )

    cue_store = RecordStore(
        ctx.dir / "cues.jsonl", {"detector": recipe.detector.model_dump(mode="json")}
    )
    todo = [r for r in unsafe if r["key"] not in cue_store]
    for start in range(0, len(todo), 64):
        chunk = [_trajectory(r) for r in todo[start : start + 64]]
        found = detect_cues(engine, detector, chunk)
        rows = zip(chunk, found, strict=True)
        cue_store.append({"key": t["rollout_key"], **c.to_json()} for t, c in rows)
    cues = {k: cue_store.get(k) for k in (r["key"] for r in unsafe)}
    ctx.log(f"cues: {dict(Counter(c['status'] for c in cues.values() if c))}")

    store = RecordStore(ctx.dir / "interventions.jsonl", {"budget": budget.__dict__, "kv": kv})
    store.path.touch()  # an empty file says "no intervention", not "not run"
    tasks = []
    for r in unsafe:
        cue = cues[r["key"]]
        if not cue or cue["status"] != "cue":
            continue
        base = _trajectory(r)
        sent = cue_sentence(cue)
        for j, trig in enumerate(triggers):
            tasks.append(make_task(base, sent, r["reasoning"], trig, j, 1))
    rounds: dict[str, int] = {}
    for round_ in range(1, iv.rounds + 1):
        rounds[str(round_)] = len(tasks)
        _run_round(engine, tasks, budget, kv, judge, recipe, store)
        if round_ == iv.rounds:
            break
        tasks = _next_round(engine, detector, store, tasks, triggers, round_ + 1)
    entries = store.records()
    per_prompt = Counter(e["rollout_key"] for e in entries)
    write_jsonl(
        ctx.dir / "generations_per_prompt.jsonl",
        [
            {
                "rollout": r["key"],
                "cue": (cues[r["key"]] or {}).get("status"),
                "interventions": per_prompt[r["key"]],
                "generations": 1 + per_prompt[r["key"]],
            }
            for r in unsafe
        ],
    )
    return intervene_summary(entries, cues, unsafe, triggers, rounds, kv)


def cue_sentence(cue: dict[str, Any]) -> Any:
    """The cue sentence read back from a ``cues.jsonl`` line."""
    from safelrm.methods.ipo.sentences import Sentence

    return Sentence(
        number=cue["number"],
        text=cue["sentence"],
        start=cue["start"],
        end=cue["start"] + len(cue["sentence"]),
        token=cue["token"],
        cut=cue["cut"],
        full_cut=cue["full_cut"],
    )


def _run_round(
    engine: Any,
    tasks: list[Task],
    budget: Budget,
    kv: bool,
    judge: Any,
    recipe: IPORecipe,
    store: RecordStore,
) -> None:
    from rich.progress import Progress

    todo = [t for t in tasks if t.key not in store]
    if not todo:
        return
    by_rollout: dict[str, list[Any]] = {}
    for t in todo:
        by_rollout.setdefault(t.rollout_key, []).append(t)
    groups = list(by_rollout.values())
    step = recipe.intervene.prompts_per_chunk
    with Progress() as bar:
        task_id = bar.add_task(f"interventions (round {todo[0].round})", total=len(todo))
        for start in range(0, len(groups), step):
            chunk = [t for g in groups[start : start + step] for t in g]
            entries = run_tasks(engine, chunk, budget, kv)
            store.append(judge_interventions(judge, entries, recipe.judge.intervened_reasoning))
            bar.advance(task_id, len(chunk))


def _next_round(
    engine: Any,
    detector: Any,
    store: RecordStore,
    tasks: list[Task],
    triggers: list[str],
    round_: int,
) -> list[Task]:
    """Tasks that intervene again on the trajectories still unsafe after this round."""
    still = [store.get(t.key) for t in tasks]
    still = [e for e in still if e and e["status"] == "unsafe"]
    if not still:
        return []
    firsts = []
    for e in still:
        sents = reasoning_sentences(engine, e["prompt"], e["reasoning"], e["answer"])
        after = [s.number for s in sents if s.start >= e["trigger_end"]]
        firsts.append(after[0] if after else len(sents) + 1)
    cues = detect_cues(engine, detector, still, firsts)
    out = []
    for e, cue in zip(still, cues, strict=True):
        if cue.sentence is None:
            continue
        # ``e`` carries the first round's cut (first_start/first_token), which the pair keeps
        out.append(
            make_task(
                e,
                cue.sentence,
                e["reasoning"],
                triggers[e["trigger_index"]],
                e["trigger_index"],
                round_,
            )
        )
    return out


def final_interventions(entries: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The last round of every (rollout, trigger)."""
    finals: dict[tuple[str, int], dict[str, Any]] = {}
    for e in entries:
        k = (e["rollout_key"], e["trigger_index"])
        if k not in finals or e["round"] > finals[k]["round"]:
            finals[k] = e
    return finals


def intervene_summary(
    entries: list[dict[str, Any]],
    cues: dict[str, Any],
    unsafe: list[dict[str, Any]],
    triggers: list[str],
    rounds: dict[int, int],
    kv: bool,
) -> dict[str, Any]:
    finals = final_interventions(entries)
    per_rollout = Counter(e["rollout_key"] for e in entries)
    safe = Counter(k[0] for k, e in finals.items() if e["status"] == "safe")
    by_trigger = {
        str(j): _rate(
            sum(1 for k, e in finals.items() if k[1] == j and e["status"] == "safe"),
            sum(1 for k in finals if k[1] == j),
        )
        for j in range(len(triggers))
    }
    gens = [1 + per_rollout.get(r["key"], 0) for r in unsafe]
    return {
        "unsafe_rollouts": len(unsafe),
        "cue_status": dict(Counter(c["status"] for c in cues.values() if c)),
        "tasks_per_round": rounds,
        "interventions": len(entries),
        "final_status": dict(Counter(e["status"] for e in finals.values())),
        "rollouts_with_a_safe_intervention": len(safe),
        "safe_rate_by_trigger": by_trigger,
        "generations_per_prompt": {
            "mean": round(sum(gens) / len(gens), 2) if gens else None,
            "max": max(gens) if gens else None,
        },
        "continued_by": dict(Counter(e["continued_by"] for e in entries)),
        "kv_reuse": kv,
    }


# ------------------------------------------------------------------ over-refusal


def run_overrefusal(ctx: StageContext) -> dict[str, Any]:
    from safelrm.data import filter_overlapping, load_train_set, subsample
    from safelrm.judges import JudgeItem, get_judge
    from safelrm.methods.ipo.detector import data_lines
    from safelrm.models import GenerationRequest, SamplingParams

    recipe = _recipe(ctx)
    o, s = recipe.overrefusal, recipe.rollouts
    if not o.enabled:
        write_jsonl(ctx.dir / "pairs.jsonl", [])
        return {"enabled": False, "pairs": 0}
    loaded = load_train_set(o.set, o.path)
    kept = filter_overlapping(loaded, eval_prompts(recipe), jaccard=s.overlap_jaccard)
    prompts = subsample(kept, o.n, o.seed)
    prefills = data_lines("refusal_prefills.txt", o.refusal_prefills_file)
    sampling = SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        max_new_tokens=o.max_new_tokens or s.max_new_tokens,
        max_reasoning_tokens=o.max_reasoning_tokens or s.max_reasoning_tokens,
        seed=recipe.seed,
    )
    engine = _policy(ctx)
    fp = {"model": recipe.model, **o.model_dump(mode="json"), "sampling": sampling.model_dump()}
    normal = engine.generate(
        [GenerationRequest(id=p.id, messages=p.chat(), sampling=sampling) for p in prompts],
        RecordStore(ctx.dir / "normal.jsonl", fp),
        description="over-refusal: normal answers",
    )
    judge = get_judge(o.refusal_judge)
    labels = judge.judge_answers(
        [JudgeItem(prompt=p.text, answer=r.answer) for p, r in zip(prompts, normal, strict=True)]
    )
    ok = [(p, r) for p, r, v in zip(prompts, normal, labels, strict=True) if v.label != "refusal"]
    fam = engine.family
    requests = []
    for i, (p, r) in enumerate(ok):
        prefill = prefills[i % len(prefills)]
        requests.append(
            GenerationRequest(
                id=p.id,
                messages=p.chat(),
                prefix=r.reasoning + fam.closing() + prefill,
                sampling=sampling,
                meta={"prefill": prefill},
            )
        )
    refusals = engine.generate(
        requests, RecordStore(ctx.dir / "refusals.jsonl", fp), description="over-refusal: refusals"
    )
    from safelrm.methods.ipo.pairs import overrefusal_pair

    pairs = [
        overrefusal_pair(p.id, p.chat(), r.model_dump(), f.model_dump(), fam)
        for (p, r), f in zip(ok, refusals, strict=True)
    ]
    write_jsonl(ctx.dir / "pairs.jsonl", [x.to_json() for x in pairs])
    write_jsonl(ctx.dir / "prompts.jsonl", [p.model_dump(exclude_none=True) for p, _ in ok])
    return {
        "enabled": True,
        "loaded": len(loaded),
        "overlap_dropped": len(loaded) - len(kept),
        "prompts": len(prompts),
        "normal_answer_was_refusal": len(prompts) - len(ok),
        "pairs": len(pairs),
        "generations_per_prompt": 2,
    }


# ------------------------------------------------------------------ pairs


def run_pairs(ctx: StageContext) -> dict[str, Any]:
    from safelrm.methods.ipo.pairs import Pair, build_dpo_rows, build_sft_rows, ipo_pair, mix
    from safelrm.models import load_tokenizer
    from safelrm.reasoning import get_family

    recipe = _recipe(ctx)
    ps = recipe.pairs
    records = {r["key"]: r for r in read_jsonl(ctx.path("rollouts", ROLLOUTS))}
    entries = read_jsonl(ctx.path("intervene", "interventions.jsonl"))
    family = get_family(next(iter(records.values()))["family"]) if records else None
    skipped: Counter = Counter()
    ipo: list[Pair] = []
    per_prompt: Counter = Counter()
    for (rkey, j), final in sorted(final_interventions(entries).items()):
        if ps.require_safe_chosen and final["status"] != "safe":
            skipped[f"intervened_{final['status']}"] += 1
            continue
        if ps.max_pairs_per_prompt and per_prompt[rkey] >= ps.max_pairs_per_prompt:
            skipped["over_max_pairs_per_prompt"] += 1
            continue
        per_prompt[rkey] += 1
        ipo.append(ipo_pair(records[rkey], final, family, j))
    overrefusal = [Pair(**p) for p in read_jsonl(ctx.path("overrefusal", "pairs.jsonl"))]
    mixed = mix(ipo, overrefusal, recipe.overrefusal.ratio, recipe.seed)
    if not mixed:
        raise SafelrmError(
            f"no preference pairs: {len(entries)} interventions, skipped {dict(skipped)}; "
            "see intervene/stage.json (more prompts, another detector or judge may help)"
        )
    tokenizer = load_tokenizer(recipe.model)
    summary: dict[str, Any] = {
        "ipo_pairs": len(ipo),
        "overrefusal_pairs": sum(p.source == "overrefusal" for p in mixed),
        "skipped": dict(skipped),
        "prompts_with_pairs": len(per_prompt),
    }
    write_jsonl(ctx.dir / "pairs.jsonl", [p.to_json() for p in mixed])
    by_id = {p.id: p for p in mixed}
    for scope in ("part", "full"):
        built = build_dpo_rows(tokenizer, mixed, scope, ps.drop_unclean_boundary)
        write_jsonl(ctx.dir / f"dpo_{scope}.jsonl", built.rows)
        write_jsonl(
            ctx.dir / f"dpo_{scope}_index.jsonl",
            [
                {"pair": i, "source": by_id[i].source, "n_prompt_tokens": n}
                for i, n in zip(built.pair_ids, built.n_prompt_tokens, strict=True)
            ],
        )
        summary[f"rows_{scope}"] = len(built.rows)
        summary[f"dropped_{scope}"] = dict(built.dropped)
    write_jsonl(ctx.dir / "sft.jsonl", build_sft_rows(mixed))
    write_jsonl(ctx.dir / "train_prompts.jsonl", train_prompt_records(ctx, mixed))
    return summary


def train_prompt_records(ctx: StageContext, pairs: list[Any]) -> list[dict[str, Any]]:
    """PromptRecords of every prompt a pair uses (for the eval overlap check)."""
    known: dict[str, dict[str, Any]] = {}
    for stage in ("rollouts", "overrefusal"):
        path = ctx.run_dir / stage / "prompts.jsonl"
        if path.exists():
            known.update((p["id"], p) for p in read_jsonl(path))
    ids = dict.fromkeys(p.prompt_id for p in pairs)
    return [known[i] for i in ids if i in known]


# ------------------------------------------------------------------ training


def _write_train_prompts(ctx: StageContext, model_dir: Path) -> None:
    from safelrm.data import PromptRecord
    from safelrm.eval.runner import write_train_prompts

    rows = read_jsonl(ctx.path("pairs", "train_prompts.jsonl"))
    write_train_prompts(model_dir, [PromptRecord.model_validate(r) for r in rows])


def _train_summary(result: Any) -> dict[str, Any]:
    losses = result.loss_history
    return {
        "merged": str(result.merged_dir),
        "rows": result.n_rows,
        "steps": result.steps,
        "seconds": result.seconds,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
    }


def run_train(ctx: StageContext) -> dict[str, Any]:
    from safelrm.train import train_dpo

    recipe = _recipe(ctx)
    rows = read_jsonl(ctx.path("pairs", f"dpo_{recipe.pairs.loss_scope}.jsonl"))
    result = train_dpo(recipe.model, None, rows, recipe.dpo, ctx.dir)
    _write_train_prompts(ctx, result.merged_dir)
    return {"loss_scope": recipe.pairs.loss_scope, **_train_summary(result)}


def run_train_ablations(ctx: StageContext) -> dict[str, Any]:
    from safelrm.train import train_dpo, train_sft

    recipe = _recipe(ctx)
    a = recipe.ablations
    out: dict[str, Any] = {}
    if a.full_trajectory:
        rows = read_jsonl(ctx.path("pairs", "dpo_full.jsonl"))
        result = train_dpo(recipe.model, None, rows, recipe.dpo, ctx.dir / "dpo_full")
        _write_train_prompts(ctx, result.merged_dir)
        out["dpo_full"] = _train_summary(result)
    if a.sft:
        rows = read_jsonl(ctx.path("pairs", "sft.jsonl"))
        result = train_sft(recipe.model, None, rows, recipe.sft, ctx.dir / "sft")
        _write_train_prompts(ctx, result.merged_dir)
        out["sft"] = _train_summary(result)
    return out or {"skipped": "no ablation enabled"}


# ------------------------------------------------------------------ evaluation and report


def _evaluate(ctx: StageContext, model: str, out_dir: Path, title: str) -> dict[str, Any]:
    from safelrm.eval.runner import run_eval

    recipe = _recipe(ctx)
    e, g = recipe.eval, recipe.generation
    results = run_eval(
        model,
        e.suite,
        e.judges,
        out_dir,
        backend=g.backend,
        batch_size=g.batch_size,
        engine=ctx.engine(model),
        limit=e.limit,
        title=title,
    )
    return headline(results)


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """Per benchmark and judge: answer harm, reasoning harm, over-refusal (value [low, high])."""
    out: dict[str, Any] = {}
    for bench, b in results.get("benchmarks", {}).items():
        row: dict[str, Any] = {}
        for judge, metrics in b.get("judges", {}).items():
            for key in ("answer_asr", "reasoning_harm", "over_refusal"):
                m = metrics.get(key)
                if m and m.get("value") is not None:
                    row[f"{judge}.{key}"] = [round(m["value"], 3), m.get("low"), m.get("high")]
        if "math_accuracy" in b and b["math_accuracy"].get("value") is not None:
            m = b["math_accuracy"]
            row["math_accuracy"] = [round(m["value"], 3), m.get("low"), m.get("high")]
        out[bench] = row
    return out


def run_eval_base(ctx: StageContext) -> dict[str, Any]:
    return _evaluate(ctx, _recipe(ctx).model, ctx.dir, f"{_recipe(ctx).model} (base)")


def run_eval_ipo(ctx: StageContext) -> dict[str, Any]:
    merged = ctx.path("train", "merged")
    return _evaluate(ctx, str(merged), ctx.dir, "IPO")


def run_eval_ablations(ctx: StageContext) -> dict[str, Any]:
    recipe = _recipe(ctx)
    out = {}
    for name, on in (("dpo_full", recipe.ablations.full_trajectory), ("sft", recipe.ablations.sft)):
        if on:
            merged = ctx.path("train_ablations", f"{name}/merged")
            out[name] = _evaluate(ctx, str(merged), ctx.dir / name, f"IPO ablation: {name}")
    return out or {"skipped": "no ablation enabled"}


def run_report(ctx: StageContext) -> dict[str, Any]:
    from safelrm.eval.paired import load_rows
    from safelrm.eval.runner import compare, load_results

    recipe = _recipe(ctx)
    results = {"base": load_results(ctx.path("eval_base", "results.json"))}
    results["ipo"] = load_results(ctx.path("eval_ipo", "results.json"))
    folders = {"base": ctx.run_dir / "eval_base", "ipo": ctx.run_dir / "eval_ipo"}
    for name in ("dpo_full", "sft"):
        p = ctx.run_dir / "eval_ablations" / name / "results.json"
        if p.exists():
            results[f"ipo-{name}"] = load_results(p)
            folders[f"ipo-{name}"] = p.parent
    rows = {label: load_rows(folder) or [] for label, folder in folders.items()}
    paths = compare(results, ctx.dir, title=f"IPO on {recipe.model}", rows_by_label=rows)
    data = {s: ctx.summary(s) for s in ("rollouts", "intervene", "overrefusal", "pairs", "train")}
    write_json(ctx.dir / "ipo_data.json", data)
    report = ctx.dir / "report.md"
    if report.exists():
        with report.open("a", encoding="utf-8") as f:
            f.write("\n\n" + data_section(data) + "\n")
    return {
        "report": str(report),
        "models": list(results),
        "files": [str(p) for p in paths.values()],
    }


def data_section(data: dict[str, Any]) -> str:
    """The IPO data-building counts as markdown (appended to the comparison report)."""
    r, iv, o, p, t = (
        data.get(k, {}) for k in ("rollouts", "intervene", "overrefusal", "pairs", "train")
    )
    lines = [
        "## IPO data",
        "",
        f"- Rollouts: {r.get('rollouts')} prompts ({r.get('overlap_dropped')} dropped for eval "
        f"overlap); status {r.get('status')}; reasoning harm {r.get('reasoning_harm')}, answer "
        f"harm {r.get('answer_harm')} (training judges).",
        f"- Cue detection on {iv.get('unsafe_rollouts')} unsafe rollouts: {iv.get('cue_status')} "
        "(every status but `cue` is counted and skipped).",
        f"- Interventions: {iv.get('interventions')} ({iv.get('tasks_per_round')} per round); "
        f"final status {iv.get('final_status')}; safe rate by trigger "
        f"{iv.get('safe_rate_by_trigger')}; continued by {iv.get('continued_by')}.",
        f"- Generations per harmful prompt: {iv.get('generations_per_prompt')}; over-refusal: "
        f"{o.get('generations_per_prompt')} per benign prompt.",
        f"- Over-refusal: {o.get('pairs')} pairs from {o.get('prompts')} prompts "
        f"({o.get('normal_answer_was_refusal')} skipped: the normal answer was a refusal).",
        f"- Pairs: {p.get('ipo_pairs')} IPO + {p.get('overrefusal_pairs')} over-refusal; "
        f"rows part {p.get('rows_part')} (dropped {p.get('dropped_part')}), full "
        f"{p.get('rows_full')}; skipped {p.get('skipped')}.",
        f"- Training ({t.get('loss_scope')}): {t.get('steps')} steps, {t.get('seconds')} s, loss "
        f"{t.get('loss_first')} -> {t.get('loss_last')}.",
    ]
    return "\n".join(lines)
