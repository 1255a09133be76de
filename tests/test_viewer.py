"""`safelrm view`: the data it embeds, and the page itself in headless Chromium with 10,000
prompts x 2 models (filter through the URL fragment, visible rows, screenshot)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safelrm.cli import app
from safelrm.errors import SafelrmError
from safelrm.eval.viewer import build_view_data, embed_json, split_safe, write_view
from safelrm.io import write_json, write_jsonl

N_PROMPTS = 10_000
SETS = ("advbench", "jbb-attacked", "xstest-safe", "gsm8k", "strongreject")
EVIL = "</script><script>document.title='pwned'</script><!-- x"
PAGE_SIZE = 25  # viewer.html


def _labels(i: int) -> dict[str, dict[str, str]]:
    """Verdicts of two judges for model ``a`` and ``b`` on prompt ``i`` (deterministic mix)."""
    a = {"kw": "unsafe" if i % 3 == 0 else "safe", "cls": "compliance" if i % 4 == 0 else "refusal"}
    b = {"kw": "unsafe" if i % 5 == 0 else "safe", "cls": "compliance" if i % 4 == 0 else "refusal"}
    return {"a": a, "b": b}


def _synthetic_compare(folder: Path) -> None:
    models = []
    for label in ("a", "b"):
        rows, records = [], []
        for i in range(N_PROMPTS):
            rid = f"{SETS[i % len(SETS)]}/p{i}"
            labels = _labels(i)[label]
            reasoning = f"Reasoning {label} {i}." + (
                " <safe>check the request</safe>" if i % 7 == 0 else ""
            )
            if i == 42:
                reasoning += EVIL
            rows.append(
                {
                    "id": rid,
                    "benchmark": SETS[i % len(SETS)],
                    "kind": "harmful",
                    "reasoning": reasoning,
                    "answer": f"Answer {label} {i}",
                    "n_reasoning_tokens": 10,
                    "verdicts": {j: {"answer": {"label": v}} for j, v in labels.items()},
                    "math_correct": None,
                }
            )
            records.append(
                {"id": rid, "key": f"{rid}#0", "sample": 0, "messages": [
                    {"role": "user", "content": f"Prompt {i}"}], "prefix": ""}
            )  # fmt: skip
        write_jsonl(folder / label / "rows.jsonl", rows)
        write_jsonl(folder / label / "records.jsonl", records)
        models.append({"label": label, "folder": label})
    write_json(folder / "compare.json", {"models": models})


def _expected(set_name: str, judge: str, disagree_models: bool, harmful: bool) -> int:
    n = 0
    for i in range(N_PROMPTS):
        if SETS[i % len(SETS)] != set_name:
            continue
        labels = _labels(i)
        flags = [labels[m][judge] in ("unsafe", "compliance") for m in ("a", "b")]
        if harmful and not any(flags):
            continue
        if disagree_models and flags[0] == flags[1]:
            continue
        n += 1
    return n


def test_split_safe_and_embedding():
    assert split_safe("think <safe>risky</safe> more") == ("think  more", "<safe>risky</safe>")
    assert split_safe("a <safe>open to the end") == ("a", "<safe>open to the end")
    text = embed_json({"x": EVIL + "\u2028"})
    assert "</script" not in text and "<!--" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": EVIL + "\u2028"}


def test_view_data_pairs_models_on_the_same_prompt(tmp_path):
    _synthetic_compare(tmp_path)
    data = build_view_data(tmp_path)
    assert data["models"] == ["a", "b"] and data["judges"] == ["kw", "cls"]
    assert len(data["prompts"]) == N_PROMPTS
    p = data["prompts"][7]
    assert p["prompt"] == "Prompt 7" and set(p["by"]) == {"a", "b"}
    assert p["by"]["a"]["s"] == "<safe>check the request</safe>"
    assert "<safe>" not in p["by"]["a"]["r"]
    with pytest.raises(SafelrmError, match="no rows.jsonl"):
        build_view_data(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(browser: str, url: str, tmp_path: Path, *extra: str) -> str:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=10000",
    ]
    done = subprocess.run(
        [browser, *flags, *extra, url], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _count(dom: str) -> tuple[int, int, int]:
    m = re.search(r'id="count" data-count="(\d+)" data-total="(\d+)" data-shown="(\d+)"', dom)
    assert m, dom[:2000]
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@pytest.mark.skipif(
    _chromium() is None,
    reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)",
)
def test_viewer_in_headless_chromium(tmp_path):
    browser = _chromium()
    data_dir = tmp_path / "cmp"
    _synthetic_compare(data_dir)
    result = CliRunner().invoke(app, ["view", str(data_dir)])
    assert result.exit_code == 0, result.output
    page = data_dir / "view.html"
    url = page.resolve().as_uri()

    dom = _run_chromium(browser, url, tmp_path, "--dump-dom")
    assert _count(dom) == (N_PROMPTS, N_PROMPTS, PAGE_SIZE)
    assert dom.count('class="prompt-row"') == PAGE_SIZE
    assert "<title>pwned" not in dom

    # set + judge + verdict + disagreement between models, applied from the URL fragment
    expected = _expected("jbb-attacked", "kw", disagree_models=True, harmful=True)
    assert 0 < expected < N_PROMPTS // len(SETS)
    query = "#set=jbb-attacked&judge=kw&verdict=%40harmful&disagree=models"
    dom = _run_chromium(browser, url + query, tmp_path, "--dump-dom")
    assert _count(dom) == (expected, N_PROMPTS, min(PAGE_SIZE, expected))
    assert dom.count('class="prompt-row"') == min(PAGE_SIZE, expected)

    # the row whose reasoning holds a closing script tag renders as text
    dom = _run_chromium(browser, url + "#q=pwned", tmp_path, "--dump-dom")
    assert _count(dom)[0] == 1
    assert html.escape(EVIL, quote=False) in dom

    # judges disagree (kw unsafe vs cls refusal, or kw safe vs cls compliance) on page 2
    shot = tmp_path / "view.png"
    _run_chromium(
        browser, url + "#disagree=judges&page=2", tmp_path, f"--screenshot={shot}",
        "--window-size=1280,1600",
    )  # fmt: skip
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_write_view_names_a_missing_folder(tmp_path):
    with pytest.raises(SafelrmError, match="not a folder"):
        write_view(tmp_path / "nope")
