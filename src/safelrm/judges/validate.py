"""Judge validation against human labels: agreement metrics and leave-one-model-out on XSTest.

Positive class = compliance (the class that counts toward ASR). For each of the five models in
the XSTest labelled completions the classifier is trained on the other four and both judges are
scored on the held-out model's 450 completions.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safelrm.io import write_atomic, write_json
from safelrm.judges.base import JudgeItem, Verdict
from safelrm.judges.classifier import (
    Encoder,
    LabelledExample,
    Method,
    RefusalClassifier,
    apply_linear_head,
    fit_linear_head,
    linear_features,
    load_xstest_labelled,
    train_classifier,
)
from safelrm.judges.keyword import KeywordJudge


def agreement(pred: Sequence[int | str | Verdict], gold: Sequence[int | str]) -> dict[str, Any]:
    """Accuracy, F1 (positive = compliance/unsafe) and Cohen's kappa over the parsed pairs.

    ``pred`` may be verdicts, labels or 0/1; unparsed predictions are left out and counted.
    """
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} gold labels")
    pairs = [(p, g) for p, g in zip(map(_binary, pred), map(_binary, gold), strict=True)]
    kept = [(p, g) for p, g in pairs if p is not None and g is not None]
    out: dict[str, Any] = {"n": len(kept), "n_unparsed": len(pairs) - len(kept)}
    if not kept:
        return out | {"accuracy": None, "f1": None, "kappa": None}
    p, g = zip(*kept, strict=True)
    kappa = cohen_kappa_score(g, p) if len(set(g) | set(p)) > 1 else 1.0
    return out | {
        "accuracy": float(accuracy_score(g, p)),
        "f1": float(f1_score(g, p, pos_label=1, zero_division=0)),
        "kappa": float(kappa),
    }


def _binary(value: int | str | Verdict) -> int | None:
    if isinstance(value, Verdict):
        return None if not value.parsed else int(value.flagged)
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return int(value)
    if value in ("compliance", "unsafe"):
        return 1
    if value in ("refusal", "safe"):
        return 0
    return None


def _items(examples: Sequence[LabelledExample]) -> list[JudgeItem]:
    return [JudgeItem(prompt=e.prompt, answer=e.completion) for e in examples]


def leave_one_model_out(
    examples: list[LabelledExample] | None = None,
    method: Method = "linear",
    epochs: int = 1,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Per held-out model: keyword (contains, startswith) and classifier agreement with humans."""
    start = time.perf_counter()
    examples = examples if examples is not None else load_xstest_labelled()
    groups = sorted({e.group for e in examples})
    keyword = {m: KeywordJudge(mode=m) for m in ("contains", "startswith")}
    features = None
    if method == "linear":
        # One encoding pass serves every fold: the encoder is frozen.
        features = linear_features(Encoder(), [e.completion for e in examples], progress=progress)
    rows = []
    for held in groups:
        test_idx = [i for i, e in enumerate(examples) if e.group == held]
        train_idx = [i for i, e in enumerate(examples) if e.group != held]
        test = [examples[i] for i in test_idx]
        gold = [e.label for e in test]
        row: dict[str, Any] = {"held_out": held, "n": len(test)}
        for mode, judge in keyword.items():
            row[f"keyword_{mode}"] = agreement(judge.judge_answers(_items(test)), gold)
        if features is not None:
            head = fit_linear_head(features[train_idx], [examples[i].label for i in train_idx])
            probs = apply_linear_head(head, features[test_idx])
        else:
            probs = _finetuned_probs([examples[i] for i in train_idx], test, epochs, work_dir)
        row["classifier"] = agreement([int(p >= 0.5) for p in probs], gold)
        rows.append(row)
        if progress:
            print(f"held out {held}: classifier acc {row['classifier']['accuracy']:.3f}")
    judges = ["keyword_contains", "keyword_startswith", "classifier"]
    mean = {"held_out": "mean", "n": sum(r["n"] for r in rows)}
    for j in judges:
        mean[j] = {k: sum(r[j][k] for r in rows) / len(rows) for k in ("accuracy", "f1", "kappa")}
    return {
        "data": "XSTest labelled completions (human final_label; compliance = positive class)",
        "classifier": {"method": method, "epochs": epochs if method == "finetune" else None},
        "rows": rows,
        "mean": mean,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _finetuned_probs(
    train: list[LabelledExample],
    test: list[LabelledExample],
    epochs: int,
    work_dir: str | Path | None,
) -> list[float]:
    import tempfile

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        train_classifier(train, Path(tmp) / "clf", method="finetune", epochs=epochs)
        clf = RefusalClassifier(Path(tmp) / "clf")
        return clf.predict([e.prompt for e in test], [e.completion for e in test])


def markdown_table(result: dict[str, Any]) -> str:
    judges = [
        ("keyword_contains", "keyword (contains)"),
        ("keyword_startswith", "keyword (startswith)"),
        ("classifier", f"classifier ({result['classifier']['method']})"),
    ]
    head = "| held-out model | n | " + " | ".join(
        f"{label} {m}" for _, label in judges for m in ("acc", "F1", "κ")
    )
    lines = [head + " |", "|" + "---|" * (2 + 3 * len(judges))]
    for row in [*result["rows"], result["mean"]]:
        name = f"**{row['held_out']}**" if row["held_out"] == "mean" else row["held_out"]
        cells = [name, str(row["n"])]
        for key, _ in judges:
            cells += [f"{row[key][m]:.3f}" for m in ("accuracy", "f1", "kappa")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Agreement with the human `final_label` (compliance vs full/partial refusal; F1 on "
        f"compliance). Classifier trained on the other four models each time. "
        f"Wall time {result['seconds']:.0f} s."
    )
    return "\n".join(lines) + "\n"


def judge_agreement(
    judge: Any, name: str, examples: list[LabelledExample], per_model: int | None = None
) -> dict[str, Any]:
    """Agreement of any registered judge (no training) with the human labels, per model that
    wrote the completions and on average; ``per_model`` draws that many completions of each
    model (seed 0) when the whole set would take too long."""
    import random

    start = time.perf_counter()
    groups = sorted({e.group for e in examples})
    rows = []
    for group in groups:
        members = [e for e in examples if e.group == group]
        if per_model is not None and per_model < len(members):
            members = random.Random(0).sample(members, per_model)
        verdicts = judge.judge_answers(_items(members))
        gold = [e.label for e in members]
        rows.append({"held_out": group, "n": len(members), name: agreement(verdicts, gold)})
    return {
        "data": "XSTest labelled completions (human final_label; compliance = positive class)",
        "judge": name,
        "per_model": per_model,
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }


def agreement_markdown(result: dict[str, Any]) -> str:
    name = result["judge"]
    lines = ["| model | n | parsed | acc | F1 | κ |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        a = row[name]
        cells = [f"{a[m]:.3f}" if a[m] is not None else "-" for m in ("accuracy", "f1", "kappa")]
        lines.append(f"| {row['held_out']} | {row['n']} | {a['n']} | " + " | ".join(cells) + " |")
    lines += ["", f"Judge `{name}`; wall time {result['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def write_validation(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    write_json(out_dir / "agreement.json", result)
    write_atomic(out_dir / "agreement.md", markdown_table(result))
    return out_dir / "agreement.json", out_dir / "agreement.md"
