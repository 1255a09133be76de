"""Training prompt sets by name (folders of ``data_root()/train``), plus ``combine``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safelrm.data.benchmarks import BENCHMARKS, gsm8k_reference
from safelrm.data.overlap import normalize
from safelrm.data.prompts import load_prompt_file
from safelrm.data.records import PromptRecord
from safelrm.data.tables import Registry, is_hub_id, open_table, subsample, text_field
from safelrm.errors import SafelrmError

TRAIN_SETS = Registry("training set", subdir="train")
register_train_set = TRAIN_SETS.register


def load_train_set(
    name: str,
    path: str | Path | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    categories: list[str] | None = None,
    **options: Any,
) -> list[PromptRecord]:
    """Load training set ``name`` from ``path`` (default ``data_root()/train/<folder>/<file>``).

    Flagged eval overlaps are dropped by default (``include_harmbench`` for star1,
    ``include_strongreject`` for malicious_instruct bring them back).
    """
    return TRAIN_SETS.load(name, path, n=n, seed=seed, categories=categories, options=options)


def list_train_sets() -> list[str]:
    return TRAIN_SETS.names()


def combine(*lists: list[PromptRecord]) -> list[PromptRecord]:
    """Concatenate record lists, keeping the first record of each normalised prompt text."""
    seen: set[str] = set()
    out = []
    for records in lists:
        for r in records:
            key = normalize(r.text)
            if key not in seen:
                seen.add(key)
                out.append(r)
    return out


def load_prompts(
    spec: str | Path, *, n: int | None = None, seed: int = 0, **options: Any
) -> list[PromptRecord]:
    """A benchmark name, a training-set name, or a prompt file (see ``load_prompt_file``)."""
    if isinstance(spec, str) and spec in BENCHMARKS:
        return BENCHMARKS.load(spec, None, n=n, seed=seed, categories=None, options=options)
    if isinstance(spec, str) and spec in TRAIN_SETS:
        return TRAIN_SETS.load(spec, None, n=n, seed=seed, categories=None, options=options)
    if Path(spec).is_file():
        return subsample(load_prompt_file(spec), n, seed)
    known = ", ".join(BENCHMARKS.names() + TRAIN_SETS.names())
    hint = " (hub ids need a named loader)" if is_hub_id(str(spec)) else ""
    raise SafelrmError(f"'{spec}' is neither a known set nor a file{hint}; known sets: {known}")


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


# ---------------------------------------------------------------- general prompts


@register_train_set(
    "gsm8k_train", "gsm8k_train/train.jsonl", description="GSM8K train (7,473, with answers)"
)
def _gsm8k_train(source: Path | str) -> list[PromptRecord]:
    t = open_table(source)
    t.require("question", "answer")
    return [
        PromptRecord(
            id=f"gsm8k_train-{i}",
            text=text_field(t, line, row, "question"),
            kind="general",
            source="gsm8k_train",
            reference=gsm8k_reference(t, line, row),
        )
        for i, line, row in t.items()
    ]


@register_train_set(
    "dolly", "dolly15k_prompts/dolly_prompts.jsonl", description="Dolly-15k instructions"
)
def _dolly(source: Path | str) -> list[PromptRecord]:
    t = open_table(source)
    t.require("instruction")
    out = []
    for i, line, row in t.items():
        instruction = text_field(t, line, row, "instruction")
        context = str(row.get("context") or "").strip()
        upstream = row.get("dolly_index")
        out.append(
            PromptRecord(
                id=f"dolly-{upstream if upstream not in (None, '') else i}",
                text=f"{instruction}\n\n{context}" if context else instruction,
                kind="general",
                source="dolly",
                meta={"instruction": instruction, "has_context": bool(context)},
            )
        )
    return out


# ---------------------------------------------------------------- harmful prompts


def _flat_harmful(
    source: Path | str,
    name: str,
    text_col: str,
    category_col: str | None,
    id_col: str | None,
    meta_cols: tuple[str, ...] = (),
    skip_flag: str | None = None,
) -> list[PromptRecord]:
    t = open_table(source)
    t.require(text_col, *(c for c in (category_col, id_col, skip_flag) if c))
    out = []
    for i, line, row in t.items():
        if skip_flag and _flag(row.get(skip_flag)):
            continue
        upstream = row.get(id_col) if id_col else None
        out.append(
            PromptRecord(
                id=f"{name}-{upstream if upstream not in (None, '') else i}",
                text=text_field(t, line, row, text_col),
                kind="harmful",
                category=(str(row[category_col]).strip() or None) if category_col else None,
                source=name,
                meta={c: row.get(c) for c in meta_cols if c in row},
            )
        )
    return out


@register_train_set(
    "do_not_answer", "do_not_answer/do_not_answer_prompts.csv", description="Do-Not-Answer (939)"
)
def _do_not_answer(source: Path | str) -> list[PromptRecord]:
    return _flat_harmful(
        source, "do_not_answer", "question", "risk_area", "id", ("types_of_harm", "specific_harms")
    )


@register_train_set("catqa", "catqa/catqa_flat.csv", description="CatQA (550, 11 categories)")
def _catqa(source: Path | str) -> list[PromptRecord]:
    return _flat_harmful(source, "catqa", "question", "category", None, ("subcategory",))


@register_train_set("star1", "star1/star1_prompts.csv", description="STAR-1 prompts (1,000)")
def _star1(source: Path | str, include_harmbench: bool = False) -> list[PromptRecord]:
    flag = None if include_harmbench else "in_harmbench"
    return _flat_harmful(
        source, "star1", "question", "category", "id", ("source", "in_harmbench"), flag
    )


@register_train_set("harmfulqa", "harmfulqa/harmfulqa_flat.csv", description="HarmfulQA (1,960)")
def _harmfulqa(source: Path | str) -> list[PromptRecord]:
    return _flat_harmful(source, "harmfulqa", "question", "topic", None, ("subtopic",))


@register_train_set(
    "malicious_instruct",
    "malicious_instruct/malicious_instruct.csv",
    description="MaliciousInstruct (100)",
)
def _malicious_instruct(
    source: Path | str, include_strongreject: bool = False
) -> list[PromptRecord]:
    flag = None if include_strongreject else "in_strongreject"
    return _flat_harmful(
        source, "malicious_instruct", "prompt", None, "line", ("in_strongreject",), flag
    )


@register_train_set(
    "simple_safety_tests",
    "simple_safety_tests/SimpleSafetyTests_test_cases.csv",
    description="SimpleSafetyTests (100)",
)
def _simple_safety_tests(source: Path | str) -> list[PromptRecord]:
    return _flat_harmful(
        source, "simple_safety_tests", "prompts_final", "harm_area", "id", ("category",)
    )


@register_train_set(
    "safety_tuned_llamas",
    "safety_tuned_llamas/safety_only_data_Instructions.json",
    description="Safety-Tuned LLaMAs instructions (2,483, with safe responses)",
)
def _safety_tuned_llamas(source: Path | str) -> list[PromptRecord]:
    t = open_table(source)
    t.require("instruction")
    out = []
    for i, line, row in t.items():
        instruction = text_field(t, line, row, "instruction")
        extra = str(row.get("input") or "").strip()
        out.append(
            PromptRecord(
                id=f"safety_tuned_llamas-{i}",
                text=f"{instruction}\n\n{extra}" if extra else instruction,
                kind="harmful",
                source="safety_tuned_llamas",
                meta={"instruction": instruction, "response": row.get("output") or ""},
            )
        )
    return out


# ---------------------------------------------------------------- benign borderline


@register_train_set(
    "coconot",
    "coconot_contrast_pref/coconot_pref.jsonl",
    description="CoCoNot contrast preference pairs (927 benign borderline)",
)
def _coconot(source: Path | str) -> list[PromptRecord]:
    t = open_table(source)
    t.require("prompt")
    keep = ("subcategory", "chosen", "rejected", "chosen_model", "rejected_model")
    return [
        PromptRecord(
            id=f"coconot-{row.get('id') or i}",
            text=text_field(t, line, row, "prompt"),
            kind="benign",
            category=row.get("category") or None,
            source="coconot",
            meta={k: row[k] for k in keep if k in row},
        )
        for i, line, row in t.items()
    ]


# ---------------------------------------------------------------- attack template sources


@register_train_set(
    "gptfuzz_templates",
    "gptfuzz_templates/GPTFuzzer.csv",
    description="GPTFuzzer seed jailbreak templates (77, with [INSERT PROMPT HERE])",
)
def _gptfuzz(source: Path | str) -> list[PromptRecord]:
    t = open_table(source)
    t.require("text")
    return [
        PromptRecord(
            id=f"gptfuzz-{row.get('id') if row.get('id') not in (None, '') else i}",
            text=text_field(t, line, row, "text"),
            kind="jailbreak",
            source="gptfuzz_templates",
            meta={"template": True},
        )
        for i, line, row in t.items()
    ]


@register_train_set(
    "jailbreak_prompts_in_the_wild",
    "jailbreak_prompts_in_the_wild/jailbreak_prompts_2023_12_25.csv",
    description="Jailbreak prompts in the wild (rows with jailbreak == True)",
)
def _itw(source: Path | str) -> list[PromptRecord]:
    t = open_table(source)
    t.require("prompt", "jailbreak")
    keep = ("platform", "source", "community", "date")
    return [
        PromptRecord(
            id=f"itw-{i}",
            text=text_field(t, line, row, "prompt"),
            kind="jailbreak",
            source="jailbreak_prompts_in_the_wild",
            meta={"template": True, **{k: row.get(k) for k in keep if k in row}},
        )
        for i, line, row in t.items()
        if _flag(row.get("jailbreak"))
    ]


@register_train_set(
    "pap_taxonomy",
    "pap_persuasion_taxonomy/persuasion_taxonomy.jsonl",
    description="Persuasion taxonomy (40 techniques: name, definition, benign example)",
)
def _pap_taxonomy(source: Path | str) -> list[PromptRecord]:
    t = open_table(source)
    t.require("ss_technique", "ss_definition")
    out = []
    for i, line, row in t.items():
        technique = text_field(t, line, row, "ss_technique")
        out.append(
            PromptRecord(
                id=f"pap_taxonomy-{i}",
                text=str(row.get("ss_example") or "").strip() or technique,
                kind="general",
                category=technique,
                source="pap_taxonomy",
                meta={
                    "technique": technique,
                    "definition": text_field(t, line, row, "ss_definition"),
                },
            )
        )
    return out
