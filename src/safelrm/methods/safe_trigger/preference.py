"""Stage ``dpo_data``: sample ST-S on the disjoint jailbreak queries, score each response with the
four indicators, keep informative queries and pair the best response with the worst.

Who decides T_full (the reasoning considers safety) and S_full (the analysis is comprehensive):

* ``keyword``: lexical rules. T_full = the shared keyword judge finds a safety-awareness phrase
  in the reasoning; S_full = a valid block whose parts each have ``analysis_min_words`` words and
  which uses ``analysis_min_terms`` distinct terms of ``prompts/safety_vocabulary.txt``.
* ``self``: the policy itself answers our yes/no prompt (``prompts/*_check.txt``).
* ``classifier`` / ``llm``: that judge's reading of the text (refusal/safe = considers safety).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safelrm.data import PromptRecord
from safelrm.eval.degeneration import is_degenerate
from safelrm.io import write_jsonl
from safelrm.judges import JudgeItem, get_judge
from safelrm.methods.safe_trigger.generation import conversation_text, generate
from safelrm.methods.safe_trigger.judging import SAFE_LABELS, AnswerJudges, parse_yes_no
from safelrm.methods.safe_trigger.recipe import DPODataSettings
from safelrm.methods.safe_trigger.reward import (
    Indicators,
    best_and_worst,
    contrast_reward,
    informative,
    reward,
)
from safelrm.methods.safe_trigger.safe_block import (
    SAFE_OPEN,
    TAG_GUARD,
    check_block,
    final_answer,
)
from safelrm.methods.safe_trigger.templates import (
    load_pass2_template,
    load_text_template,
    load_vocabulary,
)
from safelrm.models.engine import GenerationRequest, SamplingParams


def vocabulary_terms(text: str, vocabulary: Sequence[str]) -> set[str]:
    low = text.lower()
    return {term for term in vocabulary if term in low}


def analysis_is_full(
    parts: dict[str, str], labels: Sequence[str], vocabulary: Sequence[str], s: DPODataSettings
) -> bool:
    """The lexical S_full rule (see the module docstring)."""
    if set(parts) != set(labels):
        return False
    if any(len(parts[label].split()) < s.analysis_min_words for label in labels):
        return False
    return len(vocabulary_terms(" ".join(parts.values()), vocabulary)) >= s.analysis_min_terms


class IndicatorJudge:
    """Decides T_full or S_full for a list of (query, text) with one of the four judge kinds."""

    def __init__(self, kind: str, which: str, engine: Any, work: Any) -> None:
        self.kind, self.which, self.engine, self.work = kind, which, engine, work
        if kind == "self":
            default = "reasoning_check.txt" if which == "reasoning" else "analysis_check.txt"
            field = "reasoning" if which == "reasoning" else "analysis"
            self.template = load_text_template(None, default, ("query", field))
        elif kind in ("classifier", "llm"):
            self.judge = get_judge(kind)
        elif kind == "keyword":
            self.judge = get_judge("keyword")

    def __call__(self, ids: list[str], queries: list[str], texts: list[str]) -> list[bool]:
        if self.kind == "self":
            return self._ask_policy(ids, queries, texts)
        items = [JudgeItem(prompt=q, reasoning=t) for q, t in zip(queries, texts, strict=True)]
        return [v.label in SAFE_LABELS for v in self.judge.judge_reasoning(items)]

    def _ask_policy(self, ids: list[str], queries: list[str], texts: list[str]) -> list[bool]:
        field = "reasoning" if self.which == "reasoning" else "analysis"
        requests = [
            GenerationRequest(
                id=i,
                messages=[{"role": "user", "content": self.template.render(query=q, **{field: t})}],
                prefix="Answer:",
                cot=False,
                sampling=SamplingParams(max_new_tokens=3),
            )
            for i, q, t in zip(ids, queries, texts, strict=True)
        ]
        recs = generate(self.engine, requests, self.work / f"check_{self.which}.jsonl", self.which)
        return [parse_yes_no(rec.answer.removeprefix("Answer:")) is True for rec in recs]


def build(
    ctx: Any, engine: Any, queries: list[PromptRecord], general: Sequence[PromptRecord] = ()
) -> dict[str, Any]:
    """Sample, score and pair. ``queries`` are the jailbreak queries (the four-indicator reward);
    ``general`` are contrast queries scored by ``contrast_reward`` (refusals read by the keyword
    judge, whatever ``data_judges`` says, since a harm judge calls a benign answer "safe")."""
    r, s = ctx.recipe, ctx.recipe.dpo_data
    template = load_pass2_template(r.pass2.prompt_file)
    labels = template.labels
    sampling = SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        max_reasoning_tokens=s.max_reasoning_tokens,
        max_new_tokens=s.max_new_tokens,
        n=s.samples,
        seed=r.seed,
        stop_repeats=TAG_GUARD,
    )
    everything = [*queries, *general]
    requests = [
        GenerationRequest(id=q.id, messages=q.chat(), sampling=sampling) for q in everything
    ]
    all_recs = generate(engine, requests, ctx.dir / "samples.jsonl", "dpo samples")
    by_id = {q.id: q for q in everything}
    contrast_ids = {q.id for q in general}
    recs = [rec for rec in all_recs if rec.id not in contrast_ids]
    contrast = [rec for rec in all_recs if rec.id in contrast_ids]
    query_text = [conversation_text(by_id[rec.id].chat()) for rec in recs]
    checks = [
        check_block(rec.answer, labels, template.instruction, r.pass2.min_part_words)
        for rec in recs
    ]
    # A degenerate loop is not a safe answer, whatever a judge reads in it (README, judges).
    f_safe = [
        v["label"] == "safe" and not is_degenerate(rec.answer)
        for rec, v in zip(
            recs,
            AnswerJudges(r.data_judges).judge(
                [
                    JudgeItem(prompt=q.text, goal=q.goal, answer=final_answer(rec.answer))
                    for q, rec in ((by_id[rec.id], rec) for rec in recs)
                ]
            ),
            strict=True,
        )
    ]
    keys = [rec.key for rec in recs]
    t_full = IndicatorJudge(s.reasoning_judge, "reasoning", engine, ctx.dir)(
        keys, query_text, [rec.reasoning for rec in recs]
    )
    if s.analysis_judge == "keyword":
        vocab = load_vocabulary()
        s_full = [c.ok and analysis_is_full(c.parts, labels, vocab, s) for c in checks]
    else:
        judged = IndicatorJudge(s.analysis_judge, "analysis", engine, ctx.dir)(
            keys, query_text, [c.block or "(no analysis)" for c in checks]
        )
        s_full = [c.ok and j for c, j in zip(checks, judged, strict=True)]
    scored = []
    for i, rec in enumerate(recs):
        ind = Indicators(f_safe[i], checks[i].ok, t_full[i], s_full[i])
        scored.append(
            {
                "id": rec.id,
                "sample": rec.sample,
                "role": "jailbreak",
                "f_safe": ind.f_safe,
                "s_exist": ind.s_exist,
                "t_full": ind.t_full,
                "s_full": ind.s_full,
                "reward": reward(ind, s.weights),
                "completion": rec.completion(),
            }
        )
    scored_contrast = score_contrast(contrast, by_id, s)
    write_jsonl(ctx.dir / "scored.jsonl", scored + scored_contrast)
    groups: dict[str, list[dict[str, Any]]] = {}
    for x in scored + scored_contrast:
        groups.setdefault(x["id"], []).append(x)
    pairs, kept = [], []
    for q in everything:
        group = groups.get(q.id, [])
        rewards = [x["reward"] for x in group]
        if not informative(rewards, s.delta):
            continue
        best, worst = best_and_worst(rewards)
        pairs.append(
            {
                "prompt": q.chat(),
                "chosen": group[best]["completion"],
                "rejected": group[worst]["completion"],
                "id": q.id,
                "chosen_reward": rewards[best],
                "rejected_reward": rewards[worst],
            }
        )
        kept.append(q)
    write_jsonl(ctx.dir / "pairs.jsonl", pairs)
    write_jsonl(ctx.dir / "prompts.jsonl", [q.model_dump() for q in kept])
    n = len(scored) or 1
    n_contrast = sum(q.id in contrast_ids for q in kept)
    summary = {
        "queries": len(queries),
        "samples": len(scored),
        "pairs_kept": len(pairs) - n_contrast,
        "queries_dropped_by_delta": len(queries) - (len(pairs) - n_contrast),
        "indicator_rates": {
            k: round(sum(x[k] for x in scored) / n, 3)
            for k in ("f_safe", "s_exist", "t_full", "s_full")
        },
        "mean_reward": round(sum(x["reward"] for x in scored) / n, 3),
    }
    if general:
        m = len(scored_contrast) or 1
        summary["contrast"] = {
            "queries": len(general),
            "pairs_kept": n_contrast,
            "answered_rate": round(sum(x["answered"] for x in scored_contrast) / m, 3),
            "s_exist_rate": round(sum(x["s_exist"] for x in scored_contrast) / m, 3),
        }
    ctx.log(f"{summary}")
    return summary


def score_contrast(
    recs: Sequence[Any], by_id: dict[str, PromptRecord], s: DPODataSettings
) -> list[dict[str, Any]]:
    """Score samples on general contrast queries with ``contrast_reward``: here any ``<safe>``
    tag counts as the trigger firing, complete block or not."""
    if not recs:
        return []
    verdicts = get_judge("keyword").judge_answers(
        [JudgeItem(prompt=by_id[rec.id].text, answer=final_answer(rec.answer)) for rec in recs]
    )
    out = []
    for rec, v in zip(recs, verdicts, strict=True):
        fired = SAFE_OPEN in rec.answer
        answered = v.label == "compliance"
        out.append(
            {
                "id": rec.id,
                "sample": rec.sample,
                "role": "general",
                "answered": answered,
                "s_exist": fired,
                "reward": contrast_reward(answered, fired, s.weights),
                "completion": rec.completion(),
            }
        )
    return out
