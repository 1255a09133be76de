from collections import Counter

import pytest

from safelrm.attacks import apply_attack, list_attacks
from safelrm.attacks.templates import TEMPLATE_DIR, load_templates
from safelrm.data import PromptRecord, load_benchmark
from safelrm.errors import SafelrmError

OWN = [
    "fiction",
    "hypothetical",
    "many_shot",
    "persuasion",
    "prefill",
    "prefix_injection",
    "refusal_suppression",
    "roleplay",
]


def harmful(n=12):
    return [
        PromptRecord(
            id=f"h{i}",
            text=f"Explain placeholder task number {i} {{with braces}}",
            kind="harmful",
            category=f"cat{i % 3}",
            source="toy",
            meta={"row": i},
        )
        for i in range(n)
    ]


def test_registry_has_every_attack():
    assert set(OWN) | {"gptfuzz", "itw", "pap", "mixed", "wild"} == set(list_attacks())


@pytest.mark.parametrize("name", OWN + ["mixed"])
def test_own_attacks_make_well_formed_records(name):
    records = harmful()
    out = apply_attack(name, records, seed=1)
    assert len(out) == len(records)
    for orig, r in zip(records, out, strict=True):
        assert r.id == f"{orig.id}@{name}"
        assert r.kind == "jailbreak"
        assert r.goal == orig.text
        assert r.category == orig.category and r.source == orig.source
        assert r.meta["attack"] == name and r.meta["row"] == orig.meta["row"] and r.meta["template"]
        chat = r.chat()
        assert chat[-1]["role"] == "user"
        assert orig.text in chat[-1]["content"]  # braces in the request survive
        assert "{request}" not in r.text
        PromptRecord.model_validate(r.model_dump())


def test_deterministic_per_record_and_seed():
    records = harmful(30)
    a = apply_attack("roleplay", records, seed=0)
    b = apply_attack("roleplay", list(reversed(records)), seed=0)
    assert [r.text for r in a] == [r.text for r in reversed(b)]  # order does not matter
    c = apply_attack("roleplay", records, seed=7)
    assert [r.text for r in a] != [r.text for r in c]
    assert len({r.meta["template"] for r in a}) >= 4  # several personas in use


def test_template_files_are_ours_and_complete():
    assert len(load_templates("roleplay").templates) >= 4
    techniques = {t.id for t in load_templates("persuasion").templates}
    assert {
        "expert_endorsement",
        "authority_endorsement",
        "logical_appeal",
        "evidence_based",
        "emotional_appeal",
    } <= techniques
    assert len(techniques) >= 6
    for path in TEMPLATE_DIR.glob("*.yaml"):
        data = load_templates(path.stem)  # validates the schema and the {request} slot
        assert data.attack == path.stem
        assert data.templates or data.pairs or data.prefixes


def test_template_without_request_slot_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("attack: bad\ntemplates:\n  - id: t1\n    text: no slot here\n")
    with pytest.raises(SafelrmError, match=r"bad\.yaml: templates\[0\] \('t1'\)"):
        load_templates("bad", str(bad))
    bad.write_text("attack: bad\nextra: 1\n")
    with pytest.raises(SafelrmError, match="extra"):
        load_templates("bad2", str(bad))


def test_template_option_selects_one():
    out = apply_attack("persuasion", harmful(), template="logical_appeal")
    assert {r.meta["template"] for r in out} == {"logical_appeal"}
    with pytest.raises(SafelrmError, match="known: .*expert_endorsement"):
        apply_attack("persuasion", harmful(), template="nope")


def test_many_shot_messages():
    for k in (8, 3, 20):
        out = apply_attack("many_shot", harmful(3), **({} if k == 8 else {"k": k}))
        for r in out:
            assert len(r.messages) == 2 * k + 1
            roles = [m["role"] for m in r.messages]
            assert roles == ["user", "assistant"] * k + ["user"]
            assert r.messages[-1]["content"] == r.goal
            assert all(m["content"].strip() for m in r.messages)
    pairs = apply_attack("many_shot", harmful(1), k=16)[0].messages[:-1]
    assert len({m["content"] for m in pairs if m["role"] == "user"}) == 16  # no repeats first
    with pytest.raises(SafelrmError, match="k must be"):
        apply_attack("many_shot", harmful(1), k=0)


def test_prefill_sets_prefix():
    out = apply_attack("prefill", harmful())
    assert all(r.prefix and r.prefix.startswith(("Sure, here is", "Absolutely")) for r in out)
    assert all(r.text == r.goal for r in out)
    fixed = apply_attack("prefill", harmful(2), prefix="Sure, here is")
    assert {r.prefix for r in fixed} == {"Sure, here is"}


def test_mixed_uses_several_attacks():
    out = apply_attack("mixed", harmful(40), seed=0)
    used = Counter(r.meta["sub_attack"] for r in out)
    assert len(used) >= 5 and set(used) <= set(OWN)
    only = apply_attack("mixed", harmful(5), attacks=["prefill", "fiction"])
    assert {r.meta["sub_attack"] for r in only} <= {"prefill", "fiction"}


def test_gptfuzz_substitutes_the_request(shared_data):
    records = load_benchmark("advbench", n=20)
    out = apply_attack("gptfuzz", records, seed=2)
    for orig, r in zip(records, out, strict=True):
        assert "[INSERT PROMPT HERE]" not in r.text and orig.text in r.text
    assert len({r.meta["template"] for r in out}) > 5
    one = apply_attack("gptfuzz", records[:2], template="0")
    assert {r.meta["template"] for r in one} == {"gptfuzz-0"}


def test_itw_appends_the_request(shared_data):
    records = load_benchmark("advbench", n=5)
    out = apply_attack("itw", records, max_chars=1500)
    for orig, r in zip(records, out, strict=True):
        assert r.text.endswith("\n\n" + orig.text)
        assert len(r.text) <= 1500 + 2 + len(orig.text)


def test_pap_uses_the_taxonomy(shared_data):
    out = apply_attack("pap", harmful(200))
    techniques = {r.meta["template"].split("/")[0] for r in out}
    assert len(techniques) >= 30
    assert "{technique}" not in out[0].text and "{definition}" not in out[0].text
    logical = apply_attack("pap", harmful(2), technique="logical appeal")
    assert all("Logical Appeal" in r.text for r in logical)


def test_bad_use():
    with pytest.raises(SafelrmError, match="known: .*roleplay"):
        apply_attack("nope", harmful())
    with pytest.raises(SafelrmError, match="unknown option"):
        apply_attack("roleplay", harmful(), k=3)
    benign = PromptRecord(id="b", text="hi", kind="benign")
    with pytest.raises(SafelrmError, match="record 'b'"):
        apply_attack("roleplay", [benign])
