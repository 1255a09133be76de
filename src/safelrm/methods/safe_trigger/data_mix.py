"""Stage ``prompts``: the training mix (general, harmful, jailbreak) and the disjoint DPO queries
(jailbreak; optionally general ones for contrast pairs, drawn after the SFT general prompts).

Harmful prompts are split three ways after shuffling: plain harmful SFT prompts, prompts wrapped
by our attacks for SFT jailbreaks, and prompts wrapped for the DPO queries, so that no underlying
request appears in two roles. Every prompt that matches an evaluation prompt of the recipe's suite
(exact or near, on the request behind any jailbreak wrapper) is removed first.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from safelrm.data import (
    PromptRecord,
    combine,
    find_overlaps,
    list_benchmarks,
    list_train_sets,
    load_benchmark,
    load_train_set,
)
from safelrm.errors import SafelrmError
from safelrm.methods.safe_trigger.recipe import AttackSpec, DataSettings, SourceSpec

ROLE_KINDS = {
    "general": {"general", "benign", "math"},
    "harmful": {"harmful"},
    "jailbreak": {"jailbreak"},
}


def load_source(spec: SourceSpec, role: str, seed: int) -> list[PromptRecord]:
    """Records of one source, checked to be of the kind its role needs."""
    if spec.set in list_train_sets():
        records = load_train_set(spec.set, spec.path, n=spec.n, seed=seed, **spec.options)
    elif spec.set in list_benchmarks():
        records = load_benchmark(spec.set, spec.path, n=spec.n, seed=seed, **spec.options)
    else:
        known = ", ".join(list_train_sets() + list_benchmarks())
        raise SafelrmError(f"data.{role}: unknown source '{spec.set}' (known: {known})")
    if spec.kind:
        records = [r.model_copy(update={"kind": spec.kind}) for r in records]
    bad = [r for r in records if r.kind not in ROLE_KINDS[role]]
    if bad:
        raise SafelrmError(
            f"data.{role}: source '{spec.set}' gives {bad[0].kind} prompts (e.g. '{bad[0].id}'); "
            f"set `kind: {role}` on the source if they should be used as {role}"
        )
    return records


def eval_prompts(suite: Any) -> dict[str, list[PromptRecord]]:
    """Every prompt of every benchmark the suite draws from (all rows, not only its sample)."""
    out: dict[str, list[PromptRecord]] = {}
    for entry in suite.entries:
        try:
            records = load_benchmark(
                entry.benchmark, entry.path, categories=entry.categories, **entry.options
            )
        except SafelrmError:
            if entry.optional:
                continue
            raise
        out.setdefault(entry.benchmark, []).extend(records)
    return out


def prompt_chars(record: PromptRecord) -> int:
    return sum(len(m["content"]) for m in record.chat()) + len(record.prefix or "")


def choose_attack(record_id: str, attacks: list[AttackSpec], seed: int) -> AttackSpec:
    """A weighted choice that depends only on (seed, record id)."""
    digest = hashlib.sha256(f"{seed}|safe_trigger|{record_id}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    return rng.choices(attacks, weights=[a.share for a in attacks])[0]


def attack_all(
    records: list[PromptRecord], attacks: list[AttackSpec], seed: int
) -> list[PromptRecord]:
    """Wrap each harmful record with one attack chosen by share; order is kept."""
    from safelrm.attacks import apply_attack

    if not attacks:
        return []
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(attacks.index(choose_attack(r.id, attacks, seed)), []).append(i)
    out: list[PromptRecord | None] = [None] * len(records)
    for a, idx in groups.items():
        spec = attacks[a]
        wrapped = apply_attack(spec.name, [records[i] for i in idx], seed, **spec.options)
        for i, w in zip(idx, wrapped, strict=True):
            out[i] = w
    return [w for w in out if w is not None]


@dataclass
class Mix:
    general: list[PromptRecord]
    harmful: list[PromptRecord]
    jailbreak: list[PromptRecord]
    dpo: list[PromptRecord]
    dpo_general: list[PromptRecord]
    counts: dict[str, Any] = field(default_factory=dict)


def _shuffled(records: list[PromptRecord], seed: int, salt: str) -> list[PromptRecord]:
    out = list(records)
    random.Random(f"{seed}|{salt}").shuffle(out)
    return out


def build_mix(
    settings: DataSettings,
    evals: dict[str, list[PromptRecord]],
    seed: int,
    log: Callable[[str], None] = print,
) -> Mix:
    """Load, deduplicate, decontaminate, length-filter, split and attack (see module docstring)."""
    counts: dict[str, Any] = {"overlap_removed": {}, "too_long": {}}

    def clean(role: str, records: list[PromptRecord]) -> list[PromptRecord]:
        report = find_overlaps(records, evals, jaccard=settings.overlap_jaccard)
        drop = report.overlapping_train_ids()
        per_bench = {b: c.train_prompts for b, c in report.counts.items() if c.train_prompts}
        counts["overlap_removed"][role] = {"total": len(drop), "by_benchmark": per_bench}
        if drop:
            log(f"{role}: removed {len(drop)} prompts overlapping the eval suite {per_bench}")
        kept = [r for r in records if r.id not in drop]
        limit = settings.max_prompt_chars
        if limit is not None:
            short = [r for r in kept if prompt_chars(r) <= limit]
            counts["too_long"][role] = len(kept) - len(short)
            kept = short
        return kept

    def load(role: str, specs: list[SourceSpec]) -> list[PromptRecord]:
        return combine(*[load_source(s, role, seed) for s in specs])

    general = clean("general", load("general", settings.general))
    harmful = _shuffled(clean("harmful", load("harmful", settings.harmful)), seed, "harmful")
    ready = _shuffled(clean("jailbreak", load("jailbreak", settings.jailbreak)), seed, "jb")

    plain = harmful[: settings.n_harmful]
    rest = harmful[settings.n_harmful :]
    # Prefill attacks need an assistant prefix, which an SFT prompt row cannot carry.
    attacked = [r for r in attack_all(rest, settings.attacks, seed) if not r.prefix]
    attacked = clean("attacked", attacked)
    pool = ready + attacked
    jailbreak = pool[: settings.n_jailbreak]
    dpo = pool[settings.n_jailbreak : settings.n_jailbreak + settings.n_dpo]
    general = _shuffled(general, seed, "general")
    dpo_general = general[settings.n_general : settings.n_general + settings.n_dpo_general]
    general = general[: settings.n_general]

    wanted = {
        "general": settings.n_general,
        "harmful": settings.n_harmful,
        "jailbreak": settings.n_jailbreak,
        "dpo": settings.n_dpo,
        "dpo_general": settings.n_dpo_general,
    }
    got = {
        "general": general,
        "harmful": plain,
        "jailbreak": jailbreak,
        "dpo": dpo,
        "dpo_general": dpo_general,
    }
    for role, n in wanted.items():
        if len(got[role]) < n:
            log(f"{role}: only {len(got[role])} prompts available (asked for {n})")
    counts["n"] = {role: len(v) for role, v in got.items()}
    counts["attacks"] = _attack_counts(jailbreak + dpo)
    counts["templates"] = template_counts(jailbreak + dpo, log)
    return Mix(general, plain, jailbreak, dpo, dpo_general, counts)


def _attack_counts(records: list[PromptRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        name = r.meta.get("sub_attack") or r.meta.get("attack") or r.source
        out[name] = out.get(name, 0) + 1
    return dict(sorted(out.items()))


def template_counts(records: list[PromptRecord], log: Callable[[str], None]) -> dict[str, Any]:
    """Real jailbreak templates (attacks ``wild``, ``gptfuzz``, ``itw``) in the training prompts:
    how many, how many cut in the middle to fit ``max_template_chars`` (logged), and the check
    that none is an eval template of the split or a near copy of one
    (``attacks.wild.split_overlap``); a training template from the eval split is warned about."""
    from safelrm.attacks.wild import split_overlap, split_templates

    wild = [r for r in records if r.meta.get("attack") in ("wild", "gptfuzz", "itw")]
    if not wild:
        return {}
    used = {str(r.meta["template"]).split("~cut")[0] for r in wild}
    cut = [r for r in wild if "~cut" in str(r.meta["template"])]
    if cut:
        longest = max(int(str(r.meta["template"]).split("~cut")[1]) for r in cut)
        log(
            f"jailbreak: {len(cut)} of {len(wild)} real templates cut in the middle (longest was "
            f"{longest} chars)"
        )
    eval_ids = {t.id for t in split_templates()["eval"]}
    overlap = split_overlap()
    out = {
        "prompts": len(wild),
        "templates_used": len(used),
        "cut_in_middle": len(cut),
        "used_eval_templates": sorted(used & eval_ids),
        "split_overlap_pairs": len(overlap),
        "split_sizes": {k: len(v) for k, v in split_templates().items()},
    }
    if out["used_eval_templates"] or overlap:
        log(
            f"WARNING: training uses {len(out['used_eval_templates'])} templates of the eval "
            "split (attack 'wild' with split: eval, or gptfuzz/itw on all templates): results on "
            "the held-out long-template set (suite st-long) are then not held out"
        )
    return out


def check_disjoint(mix: Mix) -> None:
    """No request (the goal behind a jailbreak, else the text) appears in two roles."""
    from safelrm.data.overlap import normalize, request_text

    seen: dict[str, str] = {}
    for role in ("harmful", "jailbreak", "dpo"):
        for r in getattr(mix, role):
            key = normalize(request_text(r))
            if key in seen and seen[key] != role:
                raise AssertionError(f"request of '{r.id}' is in both {seen[key]} and {role}")
            seen[key] = role
