import pytest

from safelrm.data import combine, list_train_sets, load_prompts, load_train_set, normalize
from safelrm.errors import SafelrmError

COUNTS = {
    "gsm8k_train": (7473, "general"),
    "dolly": (14994, "general"),
    "do_not_answer": (939, "harmful"),
    "catqa": (550, "harmful"),
    "star1": (968, "harmful"),  # 1,000 minus 32 HarmBench behaviours
    "harmfulqa": (1960, "harmful"),
    "malicious_instruct": (88, "harmful"),  # 100 minus 12 StrongREJECT prompts
    "simple_safety_tests": (100, "harmful"),
    "safety_tuned_llamas": (2483, "harmful"),
    "coconot": (927, "benign"),
    "gptfuzz_templates": (77, "jailbreak"),
    "jailbreak_prompts_in_the_wild": (1405, "jailbreak"),
    "pap_taxonomy": (40, "general"),
}


def test_registry_names():
    assert set(list_train_sets()) == set(COUNTS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_train_set_loads(shared_data, name):
    records = load_train_set(name)
    count, kind = COUNTS[name]
    assert len(records) == count
    assert {r.kind for r in records} == {kind}
    assert len({r.id for r in records}) == count
    assert all(r.text.strip() for r in records)


def test_flagged_rows_come_back_on_request(shared_data):
    star1 = load_train_set("star1", include_harmbench=True)
    assert len(star1) == 1000
    assert sum(r.meta["in_harmbench"] == "1" for r in star1) == 32
    assert len(load_train_set("malicious_instruct", include_strongreject=True)) == 100


def test_fields(shared_data):
    gsm = load_train_set("gsm8k_train")
    assert gsm[0].reference == "72"
    dolly = {r.id: r for r in load_train_set("dolly")}
    lsd = dolly["dolly-13833"]
    assert lsd.text.startswith("What is LSD\n\nLysergic acid")
    assert lsd.meta["instruction"] == "What is LSD"
    assert dolly["dolly-1"].text == "Which is a species of fish? Tope or Rope"
    dna = load_train_set("do_not_answer")
    assert dna[0].category.startswith("Discrimination, Exclusion")
    coconot = load_train_set("coconot")
    assert {"chosen", "rejected"} <= set(coconot[0].meta)
    pap = load_train_set("pap_taxonomy")
    assert pap[0].meta["technique"] == "Evidence-based Persuasion"
    assert all("[INSERT PROMPT HERE]" in r.text for r in load_train_set("gptfuzz_templates"))


def test_subsample_and_categories(shared_data):
    a = load_train_set("catqa", n=7, seed=5)
    assert [r.id for r in a] == [r.id for r in load_train_set("catqa", n=7, seed=5)]
    cats = load_train_set("catqa", categories=["Illegal Activity"])
    assert cats and {r.category for r in cats} == {"Illegal Activity"}


def test_combine_deduplicates_on_normalised_text(shared_data):
    sst = load_train_set("simple_safety_tests")
    star1 = load_train_set("star1", include_harmbench=True)
    combined = combine(sst, star1)
    assert len(combined) == len({normalize(r.text) for r in sst + star1})
    assert len(combined) < len(sst) + len(star1)  # STAR-1 contains SimpleSafetyTests prompts
    assert combined[: len(sst)] == sst  # the first occurrence wins
    # trailing punctuation and case do not make a new prompt
    twice = combine(
        sst[:1], [sst[0].model_copy(update={"id": "x", "text": sst[0].text.upper() + "!"})]
    )
    assert len(twice) == 1


def test_load_prompts_resolves_names_and_files(shared_data, tmp_path):
    assert len(load_prompts("advbench", n=3)) == 3
    assert len(load_prompts("catqa", n=3)) == 3
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    assert [r.text for r in load_prompts(str(f))] == ["a", "b"]
    with pytest.raises(SafelrmError, match="neither a known set nor a file"):
        load_prompts("nope")


def test_missing_column_and_unknown_name(tmp_path):
    f = tmp_path / "catqa.csv"
    f.write_text("category,subcategory,prompt\nA,B,C\n")
    with pytest.raises(SafelrmError, match=r"catqa\.csv field 'question'"):
        load_train_set("catqa", f)
    with pytest.raises(SafelrmError, match="known: .*catqa"):
        load_train_set("catqaa")
