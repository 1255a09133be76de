import json

import pytest

from safelrm.errors import SafelrmError
from safelrm.store import RecordStore


def test_partial_last_line_is_cut_on_reopen(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.append([{"key": "a#0", "x": 1}, {"key": "b#0", "x": 2}])
    with path.open("a") as f:
        f.write('{"key": "c#0", "x"')  # what a SIGKILL mid-write leaves
    reopened = RecordStore(path)
    assert reopened.keys() == {"a#0", "b#0"}
    reopened.append([{"key": "c#0", "x": 3}, {"key": "a#0", "x": 9}])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["key"] for r in rows] == ["a#0", "b#0", "c#0"]


def test_fingerprint_mismatch_refuses_to_mix_settings(tmp_path):
    path = tmp_path / "r.jsonl"
    RecordStore(path, {"model": "m", "temperature": 0.0}).append([{"key": "a#0"}])
    RecordStore(path, {"model": "m", "temperature": 0.0})  # same settings: fine
    with pytest.raises(SafelrmError, match="temperature"):
        RecordStore(path, {"model": "m", "temperature": 0.7})
