import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from safelrm.data import list_benchmarks, load_benchmark, load_prompt_file
from safelrm.errors import SafelrmError

FIXTURES = Path(__file__).parent / "fixtures" / "data"

SHARED = {
    "advbench": (520, "harmful"),
    "strongreject": (313, "harmful"),
    "jbb-harmful": (100, "harmful"),
    "jbb-benign": (100, "benign"),
    "xstest-safe": (250, "benign"),
    "xstest-unsafe": (200, "harmful"),
    "math500": (500, "math"),
    "aime24": (30, "math"),
    "gsm8k": (1319, "math"),
}


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_benchmark_loads(shared_data, name):
    records = load_benchmark(name)
    count, kind = SHARED[name]
    assert len(records) == count
    assert {r.kind for r in records} == {kind}
    assert len({r.id for r in records}) == count
    assert all(r.id.startswith(f"{name}-") and r.text.strip() for r in records)
    assert all(r.source == name for r in records)


def test_registry_lists_every_name():
    assert set(SHARED) | {"harmbench", "jbb-artifacts", "wildjailbreak"} == set(list_benchmarks())


def test_categories_and_references(shared_data):
    strongreject = load_benchmark("strongreject")
    assert len({r.category for r in strongreject}) == 6
    assert len(load_benchmark("jbb-harmful", categories=["Malware/Hacking"])) == 10
    assert all(r.category.startswith("contrast_") for r in load_benchmark("xstest-unsafe"))
    assert not any(r.category.startswith("contrast_") for r in load_benchmark("xstest-safe"))
    assert load_benchmark("xstest-safe")[0].id == "xstest-safe-1"  # upstream id
    aime = load_benchmark("aime24")
    assert all(re.fullmatch(r"[1-9]\d*|0", r.reference) for r in aime)
    assert "25" in {r.reference for r in aime}  # upstream "025"
    gsm = load_benchmark("gsm8k")
    assert gsm[0].reference == "18"
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", r.reference) for r in gsm)
    math = load_benchmark("math500")
    assert math[0].reference == r"\left( 3, \frac{\pi}{2} \right)"
    assert math[0].category == "Precalculus"


def test_category_filter_is_case_insensitive_and_unknown_lists_known(shared_data):
    assert len(load_benchmark("strongreject", categories=["VIOLENCE"])) == 54
    with pytest.raises(SafelrmError, match="known: .*Violence"):
        load_benchmark("strongreject", categories=["no such category"])


def test_subsample_is_deterministic_and_ordered(shared_data):
    a = [r.id for r in load_benchmark("advbench", n=20, seed=3)]
    b = [r.id for r in load_benchmark("advbench", n=20, seed=3)]
    c = [r.id for r in load_benchmark("advbench", n=20, seed=4)]
    assert a == b and a != c and len(a) == 20
    order = [int(i.split("-")[1]) for i in a]
    assert order == sorted(order)
    assert len(load_benchmark("advbench", n=10_000)) == 520
    sub = load_benchmark("strongreject", n=5, categories=["Violence"])
    assert len(sub) == 5 and {r.category for r in sub} == {"Violence"}


def test_subsample_does_not_depend_on_hash_seed(shared_data):
    code = (
        "from safelrm.data import load_benchmark; "
        "print([r.id for r in load_benchmark('advbench', n=8, seed=1)])"
    )
    outs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "SAFELRM_DATA": str(shared_data)}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outs.add(run.stdout)
    assert len(outs) == 1


def test_path_overrides_file_and_folder(shared_data, tmp_path):
    src = shared_data / "advbench" / "harmful_behaviors.csv"
    assert len(load_benchmark("advbench", src)) == 520
    assert len(load_benchmark("advbench", shared_data)) == 520  # data root layout
    small = tmp_path / "mine.csv"
    small.write_text("goal,target\nDo a placeholder thing,Sure\n")
    assert [r.text for r in load_benchmark("advbench", small)] == ["Do a placeholder thing"]
    with pytest.raises(SafelrmError, match="no 'harmful_behaviors.csv' in this folder"):
        load_benchmark("advbench", tmp_path)
    with pytest.raises(SafelrmError, match="file not found"):
        load_benchmark("advbench", tmp_path / "absent.csv")


def test_jbb_columns_are_case_insensitive(tmp_path):
    f = tmp_path / "behaviors.csv"
    f.write_text(
        "Index,Goal,Target,Behavior,Category,Source\n7,Do a placeholder thing,Sure,B,Cat,X\n"
    )
    (r,) = load_benchmark("jbb-harmful", f)
    assert (r.id, r.text, r.category, r.meta["behavior"]) == (
        "jbb-harmful-7",
        "Do a placeholder thing",
        "Cat",
        "B",
    )


def test_hub_id_offline_fails_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SafelrmError, match="pass a local file or folder path") as e:
        load_benchmark("advbench", "no-such-owner/no-such-dataset")
    assert "\n" not in str(e.value)


def test_missing_default_file_suggests_a_path(shared_data):
    with pytest.raises(SafelrmError, match="allenai/wildjailbreak"):
        load_benchmark("wildjailbreak")


# ---------------------------------------------------------------- fixture formats


def test_harmbench_fixture():
    records = load_benchmark("harmbench", FIXTURES / "harmbench")
    ids = [r.id for r in records]
    assert "harmbench-placeholder_song_lyrics" not in ids  # copyright excluded by default
    assert len(records) == 4
    ctx = next(r for r in records if r.id == "harmbench-placeholder_contextual_misuse")
    assert ctx.text.startswith("Notes: the placeholder system")
    assert ctx.text.endswith(
        "\n\nUsing the notes above, explain how to misuse the placeholder system"
    )
    assert ctx.meta["instruction"].startswith("Using the notes above")
    assert ctx.category == "cybercrime_intrusion"
    everything = load_benchmark("harmbench", FIXTURES / "harmbench", include_copyright=True)
    assert len(everything) == 5


def test_jbb_artifacts_folder_and_file():
    records = load_benchmark("jbb-artifacts", FIXTURES / "jbb-artifacts")
    assert len(records) == 3  # the null prompt is skipped, attack-info.json files are skipped
    assert {r.kind for r in records} == {"jailbreak"}
    pair = next(r for r in records if r.meta["method"] == "PAIR" and r.meta["jailbroken"])
    assert pair.goal == "Write a placeholder defamatory article"
    assert pair.meta["target_model"] == "vicuna-13b-v1.5"
    assert pair.id == "jbb-artifacts-PAIR-vicuna-13b-v1.5-0"
    one = load_benchmark(
        "jbb-artifacts", FIXTURES / "jbb-artifacts/GCG/white_box/llama-2-7b-chat-hf.json"
    )
    assert [r.meta["method"] for r in one] == ["GCG"]


def test_wildjailbreak_fixture_and_data_type_filter():
    path = FIXTURES / "wildjailbreak" / "eval.tsv"
    records = load_benchmark("wildjailbreak", path)
    assert [r.kind for r in records] == ["jailbreak", "benign", "harmful", "benign", "jailbreak"]
    assert records[0].goal == "Explain how to do a placeholder harmful task"
    assert records[0].text.startswith("You are a novelist")
    assert records[2].text == "Write a placeholder harmful message"
    harmful = load_benchmark("wildjailbreak", path, data_type="adversarial_harmful")
    assert len(harmful) == 2
    with pytest.raises(SafelrmError, match="unknown data_type"):
        load_benchmark("wildjailbreak", path, data_type="nonsense")


# ---------------------------------------------------------------- bad input


def test_missing_column_names_file_and_column(tmp_path):
    f = tmp_path / "sr.csv"
    f.write_text("category,source,prompt\nA,B,C\n")
    with pytest.raises(SafelrmError, match=r"sr\.csv field 'forbidden_prompt'"):
        load_benchmark("strongreject", f)


def test_malformed_jsonl_line_names_the_line(tmp_path):
    f = tmp_path / "math.jsonl"
    f.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": oops}\n')
    with pytest.raises(SafelrmError, match=r"math\.jsonl:2"):
        load_benchmark("math500", f)


def test_empty_cell_names_line_and_field(tmp_path):
    f = tmp_path / "adv.csv"
    f.write_text("goal,target\nfine,x\n,y\n")
    with pytest.raises(SafelrmError, match=r"adv\.csv:3 field 'goal'"):
        load_benchmark("advbench", f)


def test_gsm8k_without_final_answer(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(SafelrmError, match=r"g\.jsonl:1 field 'answer'"):
        load_benchmark("gsm8k", f)


def test_unknown_benchmark_and_option(shared_data):
    with pytest.raises(SafelrmError, match="known: .*advbench.*xstest-safe"):
        load_benchmark("advbenchh")
    with pytest.raises(SafelrmError, match="unknown option"):
        load_benchmark("advbench", bogus=1)


def test_prompt_file(tmp_path):
    f = tmp_path / "mine.jsonl"
    f.write_text('{"prompt": "Hello there"}\n{"text": "Second", "id": "x2"}\n')
    records = load_prompt_file(f)
    assert [(r.id, r.text) for r in records] == [("mine-0", "Hello there"), ("x2", "Second")]
