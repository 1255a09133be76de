"""Final-answer extraction and scoring for math benchmarks (MATH-500, AIME, GSM8K).

Scoring uses math-verify (``parse`` + ``verify``); when it cannot decide (it timed out, failed to
parse, or we run outside the main thread where its signal-based timeout is unavailable) a plain
numeric comparison of the extracted answer decides.
"""

from __future__ import annotations

import logging
import re
import threading

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_HASHES = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*([^\n]+)", re.IGNORECASE)
_NUMBER_RE = re.compile(_NUMBER)
_PHRASE_END = re.compile(r"\.\s|\s(?:because|since|so|as)\s", re.IGNORECASE)
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")

# math-verify logs a warning per call when timeouts are disabled; we disable them on purpose.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), with nested braces."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def _clean_phrase(s: str) -> str:
    """Trim an 'answer is ...' phrase to the answer: drop $, bold, trailing period."""
    s = s.strip().strip("*").strip()
    if s.startswith("$") and s.count("$") >= 2:
        s = s[1 : s.index("$", 1)]
    s = _PHRASE_END.split(s, maxsplit=1)[0]
    return s.strip("$ ").rstrip(".").strip()


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``: last ``\\boxed{}``, else ``#### x``, else ``answer is x``,
    else the last number; None when there is none."""
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed:
        return boxed
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip()
    phrases = _ANSWER_IS.findall(text)
    if phrases and (phrase := _clean_phrase(phrases[-1])):
        return phrase
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None


def reference_answer(reference: str) -> str:
    """The reference's final answer: a GSM8K solution gives the part after ``####``."""
    hashes = _HASHES.findall(reference)
    return hashes[-1].strip() if hashes else reference.strip()


def to_number(s: str) -> float | None:
    """A plain number written in ``s`` (commas, $, %, ``\\text{}`` units and a leading
    ``x =`` allowed), else None."""
    s = _TEXT_WRAP.sub(r"\1", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = s.replace("\\!", "").replace("{,}", "").replace(",", "").strip()
    s = s.split("=")[-1].strip()
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?|-?\.\d+)\s*(?:[a-zA-Z ]*)", s)
    if not m:
        return None
    return float(m.group(1))


def _numbers_equal(a: str, b: str) -> bool | None:
    x, y = to_number(a), to_number(b)
    if x is None or y is None:
        return None
    return abs(x - y) <= 1e-6 * max(1.0, abs(y))


def _math_verify(pred: str, gold: str) -> bool:
    from math_verify import parse, verify

    # math-verify's timeout is signal based and only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify raises rarely, but a scorer must never stop an evaluation
        return False


def is_correct(answer: str, reference: str) -> bool:
    """Whether the final answer in ``answer`` matches ``reference`` (a LaTeX answer, an integer
    string such as AIME's "025", or a GSM8K number/solution)."""
    pred = extract_answer(answer)
    if pred is None:
        return False
    gold = reference_answer(reference)
    if _numbers_equal(pred, gold):
        return True
    return _math_verify(pred, gold)
