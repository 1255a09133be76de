import json
import threading

import pytest

from safelrm.eval.math import extract_answer, is_correct, reference_answer, to_number

# MATH-500 unique_id -> (a correct model answer, a wrong one), written by hand.
MATH500_CASES = {
    "test/algebra/2584.json": (r"So $x = \boxed{\frac{28}{6}}$.", r"\boxed{\frac{14}{5}}"),
    "test/precalculus/807.json": (r"The point is \boxed{(3, \frac{\pi}{2})}", r"\boxed{(3, \pi)}"),
    "test/algebra/1349.json": (r"Evelyn is fastest: \boxed{\text{Evelyn}}", r"\boxed{\text{Bob}}"),
    "test/algebra/2036.json": (r"\boxed{\sqrt{117}}", r"\boxed{3\sqrt{11}}"),
    "test/intermediate_algebra/1994.json": (r"\boxed{-q + p}", r"\boxed{q - p}"),
    "test/precalculus/927.json": (r"the angle is $\boxed{90^\circ}$", r"\boxed{45^\circ}"),
}


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_math500_references(shared_data):
    refs = {r["unique_id"]: r["answer"] for r in _jsonl(shared_data / "math500" / "test.jsonl")}
    for uid, (right, wrong) in MATH500_CASES.items():
        assert is_correct(right, refs[uid]), (uid, right)
        assert not is_correct(wrong, refs[uid]), (uid, wrong)


def test_gsm8k_references(shared_data):
    rows = _jsonl(shared_data / "gsm8k" / "test.jsonl")[:3]  # answers 18, 3, 70000
    assert [reference_answer(r["answer"]) for r in rows] == ["18", "3", "70000"]
    assert is_correct("She makes $18 every day.", rows[0]["answer"])
    assert is_correct("#### 3", reference_answer(rows[1]["answer"]))
    assert is_correct("The profit is $70,000.", rows[2]["answer"])
    assert not is_correct("The answer is 17.", rows[0]["answer"])
    assert not is_correct("The profit is $7,000.", rows[2]["answer"])


def test_aime_references_compare_as_integers(shared_data):
    rows = _jsonl(shared_data / "aime2024" / "test.jsonl")[:3]
    for r in rows:
        n = int(r["answer"])
        assert is_correct(rf"Therefore the answer is $\boxed{{{n}}}$.", r["answer"])
        assert not is_correct(rf"\boxed{{{n + 1}}}", r["answer"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"first \boxed{1} then \boxed{\frac{a}{b^{2}}}", r"\frac{a}{b^{2}}"),
        ("work...\n#### 1,234", "1,234"),
        ("So the answer is $x=5$. Also 3.", "x=5"),
        ("The final answer is 42 because 6*7.", "42"),
        ("I computed 3 then 4.5 apples", "4.5"),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_to_number():
    assert to_number(r"\$1,000") == 1000
    assert to_number(r"50\%") == 50
    assert to_number(r"12 \text{ cm}") == 12
    assert to_number(r"\frac{1}{2}") is None


def test_scoring_outside_main_thread():
    # math-verify's signal-based timeout cannot run in a worker thread; scoring must still work.
    out = {}
    thread = threading.Thread(
        target=lambda: out.update(
            ok=is_correct(r"\boxed{\frac{28}{6}}", r"\frac{14}{3}"),
            bad=is_correct(r"\boxed{\frac{1}{3}}", r"\frac{14}{3}"),
        )
    )
    thread.start()
    thread.join()
    assert out == {"ok": True, "bad": False}
