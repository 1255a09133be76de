"""Evaluation benchmarks by name: each loader turns an upstream file into ``PromptRecord``s.

A loader is registered with ``@register_benchmark`` (like lm-evaluation-harness tasks) and reads
its file from ``data_root()/<default>`` unless a file, a folder or a hub id is given. The generic
table reading and the registry live in ``safelrm.data.tables``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from safelrm.data.records import PromptRecord
from safelrm.data.tables import Registry, Table, open_table, text_field
from safelrm.errors import SafelrmError, where

BENCHMARKS = Registry("benchmark")
register_benchmark = BENCHMARKS.register


def load_benchmark(
    name: str,
    path: str | Path | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    categories: list[str] | None = None,
    **options: Any,
) -> list[PromptRecord]:
    """Load benchmark ``name`` from ``path`` (file, folder or hub id; default: the data root).

    ``n`` records are drawn deterministically by ``seed`` after the ``categories`` filter.
    Loader-specific ``options`` (e.g. ``include_copyright=True`` for harmbench) pass through.
    """
    return BENCHMARKS.load(name, path, n=n, seed=seed, categories=categories, options=options)


def list_benchmarks() -> list[str]:
    return BENCHMARKS.names()


# ---------------------------------------------------------------- loaders


@register_benchmark(
    "advbench",
    "advbench/harmful_behaviors.csv",
    hub="walledai/AdvBench",
    description="520 harmful behaviours (goal, target)",
)
def _advbench(source: Path | str, split: str = "train") -> list[PromptRecord]:
    t = open_table(source, split=split)
    goal = t.pick("goal", "prompt")  # the hub copy calls it "prompt"
    t.require(goal)
    return [
        PromptRecord(
            id=f"advbench-{i}",
            text=text_field(t, line, row, goal),
            kind="harmful",
            source="advbench",
            meta={"target": row.get("target") or ""},
        )
        for i, line, row in t.items()
    ]


@register_benchmark(
    "strongreject",
    "strongreject/strongreject_dataset.csv",
    description="313 forbidden prompts in 6 categories",
)
def _strongreject(source: Path | str, split: str = "train") -> list[PromptRecord]:
    t = open_table(source, split=split)
    t.require("category", "source", "forbidden_prompt")
    return [
        PromptRecord(
            id=f"strongreject-{i}",
            text=text_field(t, line, row, "forbidden_prompt"),
            kind="harmful",
            category=row["category"],
            source="strongreject",
            meta={"upstream_source": row["source"]},
        )
        for i, line, row in t.items()
    ]


def _jbb(source: Path | str, name: str, kind: str, split: str, config: str) -> list[PromptRecord]:
    t = open_table(source, split=split, config=config)
    t.require("goal", "category")
    out = []
    for i, line, row in t.items():
        upstream = str(row.get("index") if row.get("index") not in (None, "") else i)
        out.append(
            PromptRecord(
                id=f"{name}-{upstream}",
                text=text_field(t, line, row, "goal"),
                kind=kind,
                category=row["category"],
                source=name,
                meta={k: row.get(k) for k in ("behavior", "target", "source") if k in row},
            )
        )
    return out


@register_benchmark(
    "jbb-harmful",
    "jailbreakbench/harmful-behaviors.csv",
    hub="JailbreakBench/JBB-Behaviors",
    description="JailbreakBench: 100 harmful behaviours",
)
def _jbb_harmful(
    source: Path | str, split: str = "harmful", config: str = "behaviors"
) -> list[PromptRecord]:
    return _jbb(source, "jbb-harmful", "harmful", split, config)


@register_benchmark(
    "jbb-benign",
    "jailbreakbench/benign-behaviors.csv",
    hub="JailbreakBench/JBB-Behaviors",
    description="JailbreakBench: 100 benign look-alikes (over-refusal)",
)
def _jbb_benign(
    source: Path | str, split: str = "benign", config: str = "behaviors"
) -> list[PromptRecord]:
    return _jbb(source, "jbb-benign", "benign", split, config)


def _xstest(source: Path | str, want_unsafe: bool, split: str) -> list[PromptRecord]:
    t = open_table(source, split=split)
    t.require("id", "prompt", "type")
    name = "xstest-unsafe" if want_unsafe else "xstest-safe"
    out = []
    for i, line, row in t.items():
        kind_type = text_field(t, line, row, "type")
        if kind_type.startswith("contrast_") != want_unsafe:
            continue
        upstream = str(row.get("id") or i)
        out.append(
            PromptRecord(
                id=f"{name}-{upstream}",
                text=text_field(t, line, row, "prompt"),
                kind="harmful" if want_unsafe else "benign",
                category=kind_type,
                source=name,
                meta={k: row.get(k) or "" for k in ("label", "focus", "note") if k in row},
            )
        )
    return out


@register_benchmark(
    "xstest-safe",
    "xstest/xstest_prompts.csv",
    hub="walledai/XSTest",
    description="XSTest: 250 safe prompts that should be answered",
)
def _xstest_safe(source: Path | str, split: str = "test") -> list[PromptRecord]:
    return _xstest(source, False, split)


@register_benchmark(
    "xstest-unsafe",
    "xstest/xstest_prompts.csv",
    hub="walledai/XSTest",
    description="XSTest: 200 unsafe contrast prompts",
)
def _xstest_unsafe(source: Path | str, split: str = "test") -> list[PromptRecord]:
    return _xstest(source, True, split)


@register_benchmark(
    "math500",
    "math500/test.jsonl",
    hub="HuggingFaceH4/MATH-500",
    description="MATH-500 problems with LaTeX answers",
)
def _math500(source: Path | str, split: str = "test") -> list[PromptRecord]:
    t = open_table(source, split=split)
    t.require("problem", "answer")
    return [
        PromptRecord(
            id=f"math500-{i}",
            text=text_field(t, line, row, "problem"),
            kind="math",
            category=row.get("subject"),
            source="math500",
            reference=text_field(t, line, row, "answer"),
            meta={k: row[k] for k in ("level", "unique_id") if k in row},
        )
        for i, line, row in t.items()
    ]


def _integer_answer(value: Any) -> str:
    text = str(value).strip()
    return str(int(text)) if re.fullmatch(r"[+-]?\d+", text) else text


@register_benchmark(
    "aime24",
    "aime2024/test.jsonl",
    hub="HuggingFaceH4/aime_2024",
    description="AIME 2024 I+II (30 problems, integer answers)",
)
def _aime24(source: Path | str, split: str = "train") -> list[PromptRecord]:
    t = open_table(source, split=split)
    t.require("problem", "answer")
    return [
        PromptRecord(
            id=f"aime24-{row.get('id') if row.get('id') not in (None, '') else i}",
            text=text_field(t, line, row, "problem"),
            kind="math",
            source="aime24",
            reference=_integer_answer(text_field(t, line, row, "answer")),
            meta={"url": row.get("url") or ""},
        )
        for i, line, row in t.items()
    ]


def gsm8k_reference(t: Table, line: int | None, row: dict[str, Any]) -> str:
    """The final answer after ``#### ``, without thousands separators."""
    answer = text_field(t, line, row, "answer")
    if "####" not in answer:
        raise SafelrmError(f"{t.where(line, 'answer')}: no '#### ' final answer")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


@register_benchmark(
    "gsm8k", "gsm8k/test.jsonl", hub="openai/gsm8k", description="GSM8K test (1,319 problems)"
)
def _gsm8k(source: Path | str, split: str = "test", config: str = "main") -> list[PromptRecord]:
    t = open_table(source, split=split, config=config)
    t.require("question", "answer")
    return [
        PromptRecord(
            id=f"gsm8k-{i}",
            text=text_field(t, line, row, "question"),
            kind="math",
            source="gsm8k",
            reference=gsm8k_reference(t, line, row),
        )
        for i, line, row in t.items()
    ]


@register_benchmark(
    "harmbench",
    "harmbench/harmbench_behaviors_text_all.csv",
    description="HarmBench text behaviours (contextual rows carry their context)",
)
def _harmbench(
    source: Path | str, include_copyright: bool = False, split: str = "train"
) -> list[PromptRecord]:
    t = open_table(source, split=split)
    t.require("behavior", "functionalcategory", "semanticcategory", "behaviorid")
    out = []
    for i, line, row in t.items():
        functional = (row.get("functionalcategory") or "").strip()
        if functional == "copyright" and not include_copyright:
            continue
        behavior = text_field(t, line, row, "behavior")
        context = (row.get("contextstring") or "").strip()
        out.append(
            PromptRecord(
                id=f"harmbench-{row.get('behaviorid') or i}",
                text=f"{context}\n\n{behavior}" if context else behavior,
                kind="harmful",
                category=row.get("semanticcategory") or None,
                source="harmbench",
                meta={
                    "functional_category": functional,
                    "tags": row.get("tags") or "",
                    # the request without its context, for judges and the overlap check
                    "instruction": behavior,
                    "context": context,
                },
            )
        )
    return out


def _artifact_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    files = sorted(p for p in source.rglob("*.json") if p.name != "attack-info.json")
    if not files:
        raise SafelrmError(f"{source}: no JailbreakBench artifact .json files below this folder")
    return files


def _slug(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "unknown"


@register_benchmark(
    "jbb-artifacts",
    "jailbreakbench/attack-artifacts",
    folder_loader=True,
    description="JailbreakBench attack artifacts (<method>/<type>/<model>.json)",
)
def _jbb_artifacts(source: Path | str) -> list[PromptRecord]:
    if isinstance(source, str):
        raise SafelrmError(f"jbb-artifacts: '{source}' is not a local artifact file or folder")
    out = []
    for path in _artifact_files(source):
        from safelrm.io import read_json

        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("jailbreaks"), list):
            raise SafelrmError(f"{where(path, field='jailbreaks')}: expected a list of jailbreaks")
        params = data.get("parameters") or {}
        method = params.get("method") or path.parent.parent.name
        model = params.get("model") or path.stem
        for j, jb in enumerate(data["jailbreaks"]):
            if not isinstance(jb, dict):
                raise SafelrmError(f"{where(path, field=f'jailbreaks[{j}]')}: expected an object")
            if not jb.get("prompt"):
                continue  # the attack produced no prompt for this behaviour
            for key in ("goal", "category"):
                if not jb.get(key):
                    raise SafelrmError(f"{where(path, field=f'jailbreaks[{j}].{key}')}: missing")
            index = jb.get("index", j)
            out.append(
                PromptRecord(
                    id=f"jbb-artifacts-{_slug(method)}-{_slug(model)}-{index}",
                    text=str(jb["prompt"]),
                    kind="jailbreak",
                    goal=str(jb["goal"]),
                    category=str(jb["category"]),
                    source="jbb-artifacts",
                    meta={
                        "method": method,
                        "target_model": model,
                        "attack_type": params.get("attack_type"),
                        "behavior": jb.get("behavior"),
                        "jailbroken": jb.get("jailbroken"),
                        "file": str(path),
                    },
                )
            )
    return out


_WJB_KINDS = {
    "adversarial_harmful": "jailbreak",
    "adversarial_benign": "benign",
    "vanilla_harmful": "harmful",
    "vanilla_benign": "benign",
}


@register_benchmark(
    "wildjailbreak",
    "wildjailbreak/eval.tsv",
    hub="allenai/wildjailbreak",
    description="WildJailbreak (vanilla/adversarial x harmful/benign)",
)
def _wildjailbreak(
    source: Path | str,
    data_type: str | list[str] | None = None,
    split: str = "train",
    config: str = "eval",
) -> list[PromptRecord]:
    t = open_table(source, split=split, config=config, delimiter="\t", keep_default_na=False)
    t.require("vanilla", "adversarial", "data_type")
    wanted = {data_type} if isinstance(data_type, str) else set(data_type or _WJB_KINDS)
    unknown = wanted - set(_WJB_KINDS)
    if unknown:
        raise SafelrmError(
            f"wildjailbreak: unknown data_type {sorted(unknown)}; known: {', '.join(_WJB_KINDS)}"
        )
    out = []
    for i, line, row in t.items():
        dtype = text_field(t, line, row, "data_type")
        if dtype not in _WJB_KINDS:
            raise SafelrmError(f"{t.where(line, 'data_type')}: unknown value '{dtype}'")
        if dtype not in wanted:
            continue
        adversarial = dtype.startswith("adversarial")
        vanilla = (row.get("vanilla") or "").strip()
        text = text_field(t, line, row, "adversarial") if adversarial else vanilla
        if not text:
            raise SafelrmError(f"{t.where(line, 'vanilla')}: empty value")
        kind = _WJB_KINDS[dtype]
        out.append(
            PromptRecord(
                id=f"wildjailbreak-{i}",
                text=text,
                kind=kind,
                source="wildjailbreak",
                goal=(vanilla or None) if kind == "jailbreak" else None,
                meta={"data_type": dtype, **({"vanilla": vanilla} if adversarial else {})},
            )
        )
    return out
