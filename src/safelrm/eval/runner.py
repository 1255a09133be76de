"""``run_eval``: suite prompts -> generation -> judges -> math scoring -> metrics -> report.

Every stage is resumable from ``out_dir``: generations go to ``records.jsonl`` (a RecordStore
whose fingerprint is the model, the suite's prompt/generation settings and CoT on/off), and each
judge's verdicts to ``verdicts-<judge>.jsonl``, keyed by record, part and a hash of the judged
text. A rerun only does what is missing; a killed run loses at most its last batch.

Training prompts beside a model. A training method that saves a model folder also writes
``safelrm_train_prompts.jsonl`` there (one ``PromptRecord`` per line, see
:func:`write_train_prompts`). ``run_eval`` reads it (or takes ``train_prompts``) and checks the
suite for train/eval overlap; any overlap becomes a loud warning in ``results["warnings"]``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from safelrm.data.records import PromptRecord
from safelrm.errors import SafelrmError
from safelrm.eval.suites import Suite, SuiteEntry, load_suite
from safelrm.io import read_json, write_json, write_jsonl
from safelrm.locking import FolderLock
from safelrm.store import RecordStore

if TYPE_CHECKING:
    from safelrm.judges import Judge
    from safelrm.models import Engine, GenerationRequest

TRAIN_PROMPTS_FILE = "safelrm_train_prompts.jsonl"
RECORDS_FILE = "records.jsonl"
JUDGED_KINDS = ("harmful", "jailbreak", "benign")
HARMFUL_KINDS = ("harmful", "jailbreak")
JUDGE_CHUNK = 128

console = Console(stderr=True)


# ------------------------------------------------------------------ training-prompt convention


def write_train_prompts(model_dir: str | Path, prompts: Sequence[PromptRecord]) -> Path:
    """Record the prompts a model was trained on, beside it, for the eval overlap check."""
    path = Path(model_dir) / TRAIN_PROMPTS_FILE
    write_jsonl(path, [p.model_dump(exclude_none=True) for p in prompts])
    return path


def read_train_prompts(path: str | Path) -> list[PromptRecord]:
    """Training prompts from a model folder's ``safelrm_train_prompts.jsonl`` or a JSONL file
    of PromptRecords (``text`` alone is enough; ``id`` defaults to the line number)."""
    from safelrm.config import parse_config
    from safelrm.io import iter_jsonl

    path = Path(path)
    if path.is_dir():
        path = path / TRAIN_PROMPTS_FILE
    out = []
    for line, row in iter_jsonl(path):
        row = {"id": f"train-{line}", "kind": "general", **row}
        out.append(parse_config(PromptRecord, row, f"{path}:{line}"))
    return out


def overlap_warnings(
    train: Sequence[PromptRecord], prompts: dict[str, list[PromptRecord]], out_dir: Path
) -> list[str]:
    """Warnings for every suite entry that shares prompts with the training set; the pairs go
    to ``out_dir/overlap.json``."""
    from safelrm.data.overlap import find_overlaps

    report = find_overlaps(list(train), prompts)
    write_json(out_dir / "overlap.json", report.model_dump())
    warnings = []
    for name, counts in report.counts.items():
        if counts.exact or counts.near:
            pair = next(p for p in report.pairs if p.benchmark == name)
            warnings.append(
                f"TRAIN/EVAL OVERLAP in '{name}': {counts.exact} exact and {counts.near} near "
                f"(Jaccard >= {report.jaccard}) matches with {counts.train_prompts} training "
                f"prompts out of {counts.n_eval} eval prompts; e.g. train '{pair.train_id}' = "
                f"eval '{pair.eval_id}' ({_short(pair.eval_text)}). Its rates are inflated; "
                f"see {out_dir / 'overlap.json'}"
            )
    return warnings


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------ prompts


def load_entry(entry: SuiteEntry, limit: int | None, path: str | None) -> list[PromptRecord]:
    from safelrm.attacks import apply_attack
    from safelrm.data import load_benchmark

    n = min(x for x in (entry.n, limit) if x is not None) if (entry.n or limit) else None
    records = load_benchmark(
        entry.benchmark,
        path or entry.path,
        n=n,
        seed=entry.seed,
        categories=entry.categories,
        **entry.options,
    )
    if entry.attack:
        records = apply_attack(entry.attack, records, seed=entry.seed, **entry.attack_options)
    return records


def load_suite_prompts(
    suite: Suite, limit: int | None = None, paths: dict[str, str] | None = None
) -> tuple[dict[str, list[PromptRecord]], list[str]]:
    """Prompts per entry label, and the notices for optional entries skipped (data missing)."""
    paths = paths or {}
    prompts: dict[str, list[PromptRecord]] = {}
    skipped: list[str] = []
    for i, entry in enumerate(suite.entries):
        path = paths.get(entry.label) or paths.get(entry.benchmark)
        try:
            records = load_entry(entry, limit, path)
        except SafelrmError as e:
            if entry.optional and path is None:
                skipped.append(f"{entry.label}: skipped ({e})")
                continue
            at = f"{suite.source or suite.name}: entry {i} ('{entry.label}')"
            raise SafelrmError(f"{at}: {e}") from None
        if not records:
            raise SafelrmError(
                f"{suite.source or suite.name}: entry {i} ('{entry.label}'): no prompts"
            )
        prompts[entry.label] = records
    if not prompts:
        raise SafelrmError(f"{suite.source or suite.name}: no prompts to evaluate")
    return prompts, skipped


def build_requests(
    suite: Suite, prompts: dict[str, list[PromptRecord]], cot: bool
) -> list[GenerationRequest]:
    from safelrm.models import GenerationRequest, SamplingParams

    entries = {e.label: e for e in suite.entries}
    requests = []
    for label, records in prompts.items():
        entry = entries[label]
        g = entry.settings(suite.generation)
        sampling = SamplingParams(
            temperature=g.temperature,
            top_p=g.top_p,
            max_new_tokens=g.max_new_tokens,
            max_reasoning_tokens=g.max_reasoning_tokens,
            seed=g.seed,
            stop_repeats=g.stop_repeats,
        )
        for r in records:
            messages = r.chat()
            if entry.suffix:
                last = messages[-1]
                messages[-1] = {**last, "content": f"{last['content']}\n\n{entry.suffix}"}
            meta = {
                "benchmark": label,
                "prompt_id": r.id,
                "kind": r.kind,
                "category": r.category,
                "goal": r.goal,
                "reference": r.reference,
            }
            if r.meta.get("context"):  # a contextual behaviour (HarmBench), for its judge
                meta["context"] = r.meta["context"]
            requests.append(
                GenerationRequest(
                    id=f"{label}/{r.id}",
                    messages=messages,
                    prefix=r.prefix or "",
                    cot=cot,
                    sampling=sampling,
                    meta=meta,
                )
            )
    return requests


# ------------------------------------------------------------------ judging


def judge_file(out_dir: Path, judge: str) -> Path:
    return out_dir / f"verdicts-{re.sub(r'[^A-Za-z0-9._-]+', '_', judge)}.jsonl"


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def judge_tasks(records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(verdict_key, part, record)`` for every part a judge should read: answers of harmful,
    jailbreak and benign prompts; reasoning of harmful and jailbreak prompts (when present)."""
    tasks = []
    for rec in records:
        kind = rec["meta"]["kind"]
        if kind not in JUDGED_KINDS or rec.get("error"):
            continue
        parts = ["answer"]
        if kind in HARMFUL_KINDS and rec["reasoning"].strip():
            parts.append("reasoning")
        for part in parts:
            tasks.append((f"{rec['key']}|{part}|{_text_hash(rec[part])}", part, rec))
    return tasks


def run_judge(
    name: str,
    judge: Judge,
    records: list[dict[str, Any]],
    out_dir: Path,
    options: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Verdicts of one judge by verdict key, judging only what its cache lacks. The cache is
    refused when the judge's ``options`` (its model, endpoint, template) changed."""
    from safelrm.judges import JudgeItem
    from safelrm.judges.base import judge_part

    store = RecordStore(judge_file(out_dir, name), {"judge": name, "options": options or {}})
    todo = [t for t in judge_tasks(records) if t[0] not in store]
    if todo:
        console.print(f"judging {len(todo)} texts with '{name}'")
    for part in ("answer", "reasoning"):
        mine = [t for t in todo if t[1] == part]
        for start in range(0, len(mine), JUDGE_CHUNK):
            chunk = mine[start : start + JUDGE_CHUNK]
            items = [JudgeItem.from_record(rec) for _, _, rec in chunk]
            try:
                verdicts = judge_part(judge, part, items)
            except SafelrmError as e:
                raise SafelrmError(f"judge '{name}': {e}") from None
            except (ConnectionError, TimeoutError, OSError) as e:
                raise SafelrmError(
                    f"judge '{name}' failed ({type(e).__name__}: {e}); "
                    "finished verdicts are kept, rerun to resume"
                ) from None
            store.append(
                {"key": key, "part": part, **v.model_dump()}
                for (key, _, _), v in zip(chunk, verdicts, strict=True)
            )
    return {r["key"]: r for r in store.records()}


# ------------------------------------------------------------------ rows


def score_math(rec: dict[str, Any]) -> bool | None:
    """Math correctness from the answer, or from the reasoning when the answer has no final
    answer in it (a budget-forced answer can be cut short)."""
    from safelrm.eval.math import extract_answer, is_correct

    reference = rec["meta"].get("reference")
    if rec["meta"]["kind"] != "math" or not reference:
        return None
    text = rec["answer"] if extract_answer(rec["answer"]) is not None else rec["reasoning"]
    return is_correct(text, reference)


def build_rows(
    records: list[dict[str, Any]], verdicts: dict[str, dict[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """EvalRow dicts: one per record, with every judge's verdict per part."""
    tasks: dict[str, list[tuple[str, str]]] = {}
    for key, part, rec in judge_tasks(records):
        tasks.setdefault(rec["key"], []).append((key, part))
    rows = []
    for rec in records:
        meta = rec["meta"]
        row_verdicts: dict[str, dict[str, Any]] = {}
        for judge, found in verdicts.items():
            for key, part in tasks.get(rec["key"], []):
                if key in found:
                    v = found[key]
                    row_verdicts.setdefault(judge, {})[part] = {
                        "label": v["label"],
                        "score": v.get("score"),
                        "parsed": v.get("parsed", True),
                    }
                    if (v.get("extra") or {}).get("categories"):  # codes a guard model named
                        row_verdicts[judge][part]["categories"] = v["extra"]["categories"]
        closed = rec["reasoning_finish"] in ("stop", "prefix") if rec["cot"] else True
        rows.append(
            {
                "id": rec["id"],
                "benchmark": meta["benchmark"],
                "kind": meta["kind"],
                "category": meta.get("category"),
                "reasoning": rec["reasoning"],
                "answer": rec["answer"],
                "think_closed": closed,
                "n_reasoning_tokens": rec["n_reasoning_tokens"],
                "n_answer_tokens": rec["n_answer_tokens"],
                "answer_finish": rec.get("answer_finish"),
                "verdicts": row_verdicts,
                "math_correct": score_math(rec),
            }
        )
    return rows


# ------------------------------------------------------------------ the run


class LazyEngine:
    """An engine loaded on first use, so that a fully resumed run never loads the model, and
    several runs (CoT on and off) share one load."""

    def __init__(
        self, model: str, backend: str = "hf", batch_size: int = 16, engine: Engine | None = None
    ) -> None:
        self.model, self.backend, self.batch_size, self.engine = model, backend, batch_size, engine

    def get(self) -> Engine:
        if self.engine is None:
            from safelrm.models import make_engine

            console.print(f"loading model '{self.model}' ({self.backend})")
            self.engine = make_engine(self.model, backend=self.backend, batch_size=self.batch_size)
        return self.engine


def parse_judges(judges: str | Sequence[str]) -> list[str]:
    names = [n.strip() for n in judges.split(",")] if isinstance(judges, str) else list(judges)
    names = [n for n in names if n]
    if not names:
        raise SafelrmError("no judge named (e.g. --judge keyword,classifier)")
    if len(set(names)) != len(names):
        raise SafelrmError(f"judge named twice in '{','.join(names)}'")
    return names


def load_results(path: str | Path) -> dict[str, Any]:
    """``results.json`` of an earlier eval (its folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise SafelrmError(f"{path}: no results.json (run `safelrm eval` there first)")
    data = read_json(path)
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise SafelrmError(f"{path}: not a safelrm results file (no 'benchmarks')")
    return data


def _model_train_prompts(model: str) -> list[PromptRecord] | None:
    path = Path(model).expanduser()
    if path.is_dir() and (path / TRAIN_PROMPTS_FILE).is_file():
        return read_train_prompts(path)
    return None


def run_eval(
    model: str,
    suite: str | Suite,
    judges: str | list[str],
    out_dir: str | Path,
    *,
    cot: bool = True,
    backend: str = "hf",
    batch_size: int = 16,
    engine: Engine | LazyEngine | None = None,
    limit: int | None = None,
    train_prompts: list[PromptRecord] | None = None,
    progress: bool = True,
    baseline: dict[str, Any] | None = None,
    paths: dict[str, str] | None = None,
    title: str | None = None,
    judge_options: dict[str, dict[str, Any]] | None = None,
    baseline_rows: list[Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``suite`` with every judge; write results.json, report.md, PNGs.

    ``engine``: an already loaded model to reuse (otherwise one is loaded, and only if some
    generation is missing). ``baseline``: an earlier results dict to compare against;
    ``baseline_rows``: its ``rows.jsonl``, for the paired table (same prompts, by id).
    ``paths``: benchmark files by entry label or benchmark name (e.g. wildjailbreak).
    ``judge_options``: constructor options per judge name (e.g. ``{"llm": {"url": ...}}``).
    Returns the results dict of :func:`safelrm.eval.metrics.summarize`, plus run details.
    """
    from safelrm.judges import get_judge

    start = time.perf_counter()
    out_dir = Path(out_dir)
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    judge_names = parse_judges(judges)
    judge_options = judge_options or {}
    unknown = sorted(set(judge_options) - set(judge_names))
    if unknown:
        raise SafelrmError(f"options given for judge(s) {unknown} that are not in the judge list")
    # unknown names and bad options fail here, before any generation
    judge_objs = {name: get_judge(name, **judge_options.get(name, {})) for name in judge_names}
    prompts, skipped = load_suite_prompts(suite, limit, paths)
    for note in skipped:
        console.print(f"[yellow]{note}[/]", highlight=False)

    with FolderLock(out_dir, "eval folder"):
        return _generate_and_judge(
            model, suite, judge_names, judge_objs, judge_options, out_dir, prompts, skipped,
            cot=cot, backend=backend, batch_size=batch_size, engine=engine, limit=limit,
            train_prompts=train_prompts, progress=progress, baseline=baseline,
            baseline_rows=baseline_rows, title=title, start=start,
        )  # fmt: skip


def _generate_and_judge(
    model: str,
    suite: Suite,
    judge_names: list[str],
    judge_objs: dict[str, Judge],
    judge_options: dict[str, dict[str, Any]],
    out_dir: Path,
    prompts: dict[str, list[PromptRecord]],
    skipped: list[str],
    *,
    cot: bool,
    backend: str,
    batch_size: int,
    engine: Engine | LazyEngine | None,
    limit: int | None,
    train_prompts: list[PromptRecord] | None,
    progress: bool,
    baseline: dict[str, Any] | None,
    baseline_rows: list[Any] | None,
    title: str | None,
    start: float,
) -> dict[str, Any]:
    from safelrm.eval.metrics import summarize
    from safelrm.eval.paired import paired_table
    from safelrm.eval.plots import make_plots
    from safelrm.eval.report import write_report

    train = train_prompts if train_prompts is not None else _model_train_prompts(model)
    warnings = overlap_warnings(train, prompts, out_dir) if train else []
    _shout(warnings)

    requests = build_requests(suite, prompts, cot)
    fingerprint = {"model": model, "backend": backend, "cot": cot, **suite.fingerprint()}
    store = RecordStore(out_dir / RECORDS_FILE, fingerprint)
    missing = sum(1 for r in requests if _needs_generation(store.get(f"{r.id}#0"), r))
    gen_seconds, new_tokens = 0.0, 0
    if missing:
        lazy = (
            engine
            if isinstance(engine, LazyEngine)
            else LazyEngine(model, backend, batch_size, engine)
        )
        loaded = lazy.get()
        console.print(f"generating {missing} of {len(requests)} responses (CoT {_on(cot)})")
        t0 = time.perf_counter()
        before = store.keys()
        loaded.generate(requests, store=store, progress=progress, description="generating")
        gen_seconds = time.perf_counter() - t0
        new_tokens = sum(
            r["n_reasoning_tokens"] + r["n_answer_tokens"]
            for r in store.records()
            if r["key"] not in before
        )
    wanted = {f"{r.id}#0" for r in requests}
    records = [rec for rec in store.records() if rec["key"] in wanted]
    failed = [rec for rec in records if rec.get("error")]
    if failed:
        warnings = [
            *warnings,
            f"{len(failed)} of {len(records)} prompts failed to generate and are excluded from "
            f"every metric (first: {failed[0]['key']}: {failed[0]['error']}); rerun to retry",
        ]
        _shout(warnings[-1:])
        records = [rec for rec in records if not rec.get("error")]

    verdicts = {
        name: run_judge(name, j, records, out_dir, judge_options.get(name))
        for name, j in judge_objs.items()
    }
    rows = build_rows(records, verdicts)
    write_jsonl(out_dir / "rows.jsonl", rows)
    results = summarize(rows, judge_names, warnings)
    results["run"] = {
        "model": model,
        "suite": suite.name,
        "suite_file": suite.source,
        "cot": cot,
        "backend": backend,
        "generation": suite.generation.model_dump(),
        "limit": limit,
        "skipped": skipped,
        "new_generations": missing,
        "errors": len(failed),
        "error_keys": [rec["key"] for rec in failed],
        "generation_seconds": round(gen_seconds, 1),
        "new_tokens": new_tokens,
        "tokens_per_second": round(new_tokens / gen_seconds, 1) if gen_seconds else None,
        "seconds": round(time.perf_counter() - start, 1),
    }
    title = title or f"{model} on {suite.name} (CoT {_on(cot)})"
    paired = (
        paired_table({"baseline": baseline_rows, "model": rows}, judge_names)
        if baseline is not None and baseline_rows
        else None
    )
    write_report(results, out_dir, title=title, baseline=baseline, paired=paired)
    make_plots(results, out_dir, baseline=baseline)
    return results


def _needs_generation(rec: dict[str, Any] | None, req: GenerationRequest) -> bool:
    """No record, a failed one (retried on every run), or one made for other content."""
    from safelrm.models.engine import content_hash, stored_hash

    if rec is None or rec.get("error"):
        return True
    sampling = req.sampling.model_dump() if req.sampling else rec["sampling"]
    return stored_hash(rec) != content_hash(req.messages, req.prefix, req.cot, sampling)


def _on(cot: bool) -> str:
    return "on" if cot else "off"


def _shout(warnings: Sequence[str]) -> None:
    for w in warnings:
        console.print(f"[bold red]WARNING:[/] {w}", highlight=False)


def compare(
    results_by_label: dict[str, dict[str, Any]],
    out_dir: str | Path,
    title: str = "safelrm comparison",
    show: bool = True,
    rows_by_label: dict[str, list[Any]] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Path]:
    """One report across models (first label = reference for deltas): report.md,
    comparison.json and plots in ``out_dir``; results.json there holds the last model's results.
    ``rows_by_label``: each model's eval rows (same labels), for the paired table (paired.json)
    of the ``(a, b)`` label ``pairs`` (default: each model against the first). Prints the
    headline table unless ``show`` is False."""
    from safelrm.eval.paired import paired_table
    from safelrm.eval.plots import make_plots
    from safelrm.eval.report import render_table, write_report

    if len(results_by_label) < 2:
        raise SafelrmError("compare needs at least two results to compare")
    out_dir = Path(out_dir)
    labels = list(results_by_label)
    last = results_by_label[labels[-1]]
    paired = None
    if rows_by_label and all(rows_by_label.get(label) for label in labels):
        judges = list(dict.fromkeys(j for r in results_by_label.values() for j in r["judges"]))
        paired = paired_table({lab: rows_by_label[lab] for lab in labels}, judges, pairs)
    paths = write_report(last, out_dir, title=title, models=results_by_label, paired=paired)
    baseline = results_by_label[labels[0]] if len(labels) == 2 else None
    make_plots(last, out_dir, baseline=baseline, models=results_by_label)
    if show:
        Console().print(render_table(last, models=results_by_label, title=title))
    return paths


def run_eval_cot(
    model: str,
    suite: str | Suite,
    judges: str | list[str],
    out_dir: str | Path,
    cots: Sequence[str] = ("on", "off"),
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Evaluate with chain of thought on and/or off (``out_dir/cot-on``, ``out_dir/cot-off``),
    sharing one loaded model; with both, write their comparison to ``out_dir``."""
    bad = [c for c in cots if c not in ("on", "off")]
    if bad or not cots or len(set(cots)) != len(cots):
        raise SafelrmError(f"--cot must be on, off or on,off (got '{','.join(cots)}')")
    out_dir = Path(out_dir)
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    lazy = LazyEngine(
        model, kwargs.pop("backend", "hf"), kwargs.pop("batch_size", 16), kwargs.pop("engine", None)
    )
    results: dict[str, dict[str, Any]] = {}
    for c in cots:
        results[f"cot-{c}"] = run_eval(
            model,
            suite,
            judges,
            out_dir / f"cot-{c}",
            cot=c == "on",
            backend=lazy.backend,
            batch_size=lazy.batch_size,
            engine=lazy,
            **kwargs,
        )
    if len(results) > 1:
        from safelrm.eval.paired import load_rows

        rows = {label: load_rows(out_dir / label) or [] for label in results}
        title = f"{model} on {suite.name}: CoT on vs off"
        compare(results, out_dir, title=title, show=False, rows_by_label=rows)
    return results
