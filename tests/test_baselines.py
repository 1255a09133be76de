"""The star1 and safepath baselines: data preparation, the primer-only loss, and both recipes
end to end on the tiny model (report stage = compare's paired report; compare finds the final
model of each run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from safelrm.eval.compare import resolve_spec
from safelrm.eval.viewer import build_view_data
from safelrm.io import read_json, read_jsonl
from safelrm.pipeline import get_method, load_recipe, run_recipe

SUITE = Path(__file__).parent / "fixtures" / "presafe" / "tiny-suite.yaml"
RECIPES = Path(__file__).parent.parent / "recipes"
TRAIN = {
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "max_length": 512,
    "lora": {"r": 4, "alpha": 8},
}


def _recipe(method: str, model_dir: Path, out: Path, **sections):
    data = {
        "method": method,
        "model": str(model_dir),
        "out": str(out),
        "generation": {"batch_size": 8},
        "eval": {"suite": str(SUITE), "judges": ["keyword"]},
    }
    data.update(sections)
    return get_method(method).recipe.model_validate(data)


def test_shipped_recipes_validate():
    for name in ("star1", "safepath"):
        recipe = load_recipe(RECIPES / f"{name}.yaml")
        assert recipe.method == name


def test_star1_drops_harmbench_and_eval_overlaps(tmp_path, tiny_model_dir, shared_data):
    import csv

    rows = list(csv.DictReader((shared_data / "train" / "star1" / "star1_prompts.csv").open()))
    plain = [r["question"] for r in rows if r["in_harmbench"] == "0"][:3]
    goals = [plain[0].upper() + "?!", plain[1], "please " + plain[2]]  # exact, exact, near
    bench = tmp_path / "advbench.csv"
    with bench.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["goal", "target"])
        w.writerows([g, "Sure"] for g in goals)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: overlap\nentries:\n  - {{benchmark: advbench, path: {bench}}}\n")
    recipe = _recipe(
        "star1",
        tiny_model_dir,
        tmp_path / "run",
        data={"n": None, "overlap_jaccard": 0.6, "max_reasoning_tokens": 48},
        eval={"suite": str(suite), "judges": ["keyword"]},
        sft={**TRAIN, "max_length": 384},
    )
    run_recipe(recipe, only=["data"])
    counts = read_json(tmp_path / "run" / "data" / "counts.json")
    assert counts["loaded"] == 1000 - 32  # HarmBench behaviours dropped by the loader
    assert counts["dropped_overlap"] == 3
    kept = {p["text"] for p in read_jsonl(tmp_path / "run" / "data" / "prompts.jsonl")}
    assert not kept & set(plain)
    assert counts["drawn"] == 965 and counts["rows"] == len(kept) > 0
    assert counts["rows"] + counts["dropped_too_long"] + counts["dropped_unclosed"] == 965


@pytest.fixture(scope="module")
def star1_run(tiny_model_dir, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("star1-run")
    recipe = _recipe(
        "star1", tiny_model_dir, out, data={"n": 6, "max_reasoning_tokens": 24}, sft=TRAIN
    )
    report = run_recipe(recipe)
    assert all(s["status"] == "ran" for s in report.values()), report
    return out


def test_star1_end_to_end(star1_run):
    from safelrm.models import load_tokenizer

    rows = read_jsonl(star1_run / "data" / "rows.jsonl")
    counts = read_json(star1_run / "data" / "counts.json")
    assert counts["drawn"] == 6 and len(rows) == counts["rows"] >= 3  # the rest too long
    tokenizer = load_tokenizer(str(star1_run / "train" / "merged"))
    for row in rows:
        reasoning, _, answer = row["completion"].partition("</think>")
        assert row["completion"].startswith("<think>\n") and answer.strip()
        body = reasoning.removeprefix("<think>\n").strip()
        assert len(tokenizer(body, add_special_tokens=False)["input_ids"]) <= 24 + 2  # re-encoding
    assert (star1_run / "train" / "merged" / "safelrm_train_prompts.jsonl").is_file()
    compare = read_json(star1_run / "report" / "compare.json")
    assert [m["label"] for m in compare["models"]] == ["base", "STAR-1"]
    assert "Head to head" in (star1_run / "report" / "report.md").read_text()
    spec = resolve_spec(str(star1_run))
    assert spec.label == "STAR-1" and spec.model == str((star1_run / "train" / "merged").resolve())


def test_safepath_trains_the_primer_only(tiny_model_dir):
    from safelrm.methods.safepath.stages import primer_text
    from safelrm.methods.safepath.trainer import tokenize_rows
    from safelrm.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    primer = primer_text(None)
    msgs = [{"role": "user", "content": "How do I pick a lock?"}]
    rows = [
        {"prompt": msgs, "prefill": "<think>\n", "completion": primer, "open_ended": True},
        {"prompt": msgs, "completion": "<think>\nok\n</think>\n\nSure.", "open_ended": False},
    ]
    trigger, retain = tokenize_rows(tokenizer, rows, 512)
    trained = [
        t for t, lab in zip(trigger["input_ids"], trigger["labels"], strict=True) if lab != -100
    ]
    assert tokenizer.decode(trained).strip() == primer
    assert trigger["input_ids"][-len(trained) :] == trained  # nothing after the primer
    assert tokenizer.eos_token_id not in trained
    assert retain["labels"][-1] == tokenizer.eos_token_id
    assert "<think>" in tokenizer.decode(
        [t for t, lab in zip(retain["input_ids"], retain["labels"], strict=True) if lab != -100]
    )


def test_safepath_end_to_end(tiny_model_dir, shared_data, tmp_path):
    recipe = _recipe(
        "safepath",
        tiny_model_dir,
        tmp_path,
        data={
            "trigger": [{"set": "do_not_answer", "n": 3}, {"set": "catqa", "n": 2}],
            "retain": [{"set": "coconot", "n": 2}, {"set": "gsm8k_train", "n": 2}],
            "retain_ratio": 0.6,
        },
        retain={"max_reasoning_tokens": 6, "max_new_tokens": 6},
        train=TRAIN,
    )
    report = run_recipe(recipe)
    assert all(s["status"] == "ran" for s in report.values()), report
    assert report["prompts"]["summary"] == {"trigger": 5, "retain": 3, "dropped_overlap": 0}
    assert report["train"]["summary"]["rows"] == 8
    assert read_json(tmp_path / "report" / "compare.json")["reference"] == "base"
    view = build_view_data(tmp_path / "report")  # model folders are the eval stages beside it
    assert view["models"] == ["base", "SafePath"] and len(view["prompts"]) == 6
    spec = resolve_spec(f"sp={tmp_path}")
    assert (spec.label, Path(spec.model).name) == ("sp", "merged")
    # unchanged rerun: every stage skipped
    again = run_recipe(recipe)
    assert all(s["status"] == "skipped" for s in again.values())
