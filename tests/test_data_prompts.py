import json

import pytest

from safelrm.data import PromptRecord, load_prompt_file, load_prompts
from safelrm.errors import SafelrmError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_prompt_text_messages_and_record_rows(tmp_path):
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "An answer"},
        {"role": "user", "content": "Follow-up"},
    ]
    full = PromptRecord(
        id="r1", text="Full record", kind="math", reference="42", prefix="Sure", meta={"k": 1}
    )
    f = _jsonl(
        tmp_path / "mix.jsonl",
        [
            {"prompt": "Plain prompt", "category": "c1"},
            {"text": "Text field", "id": "t7"},
            {"messages": chat, "kind": "jailbreak"},
            full.model_dump(),
        ],
    )
    records = load_prompt_file(f, kind="benign")
    assert [r.id for r in records] == ["mix-0", "t7", "mix-2", "r1"]
    assert [r.text for r in records] == ["Plain prompt", "Text field", "Follow-up", "Full record"]
    assert [r.kind for r in records] == ["benign", "benign", "jailbreak", "math"]
    assert records[0].category == "c1" and records[0].source == "mix"
    assert records[2].chat() == chat
    assert records[3] == full


def test_json_list_and_json_lines(tmp_path):
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps([{"prompt": "a"}, {"Prompt": "b"}]))
    assert [r.text for r in load_prompt_file(as_list)] == ["a", "b"]
    as_lines = _jsonl(tmp_path / "lines.json", [{"prompt": "c"}, {"prompt": "d"}])
    assert [(r.id, r.text) for r in load_prompt_file(as_lines)] == [
        ("lines-0", "c"),
        ("lines-1", "d"),
    ]


def test_csv_named_column_any_case(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text('ID,Question,Category\nq1,What is 2+2?,math\n,"Two, lines\nhere",\n')
    records = load_prompt_file(f, column="question", kind="math")
    assert [(r.id, r.text, r.kind) for r in records] == [
        ("q1", "What is 2+2?", "math"),
        ("p-1", "Two, lines\nhere", "math"),
    ]
    assert records[0].category == "math" and records[1].category is None


def test_csv_and_tsv_default_columns(tmp_path):
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("\ufeffPrompt,kind\nhello,harmful\nworld,\n", encoding="utf-8")
    assert [(r.text, r.kind) for r in load_prompt_file(csv_file)] == [
        ("hello", "harmful"),
        ("world", "general"),
    ]
    tsv_file = tmp_path / "b.tsv"
    tsv_file.write_text("index\ttext\n5\tone, with comma\n")
    assert [(r.id, r.text) for r in load_prompt_file(tsv_file)] == [("5", "one, with comma")]


def test_plain_text_one_prompt_per_line(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("first prompt\n\n  second prompt  \n")
    records = load_prompt_file(f, kind="harmful")
    assert [(r.id, r.text, r.kind) for r in records] == [
        ("list-0", "first prompt", "harmful"),
        ("list-1", "second prompt", "harmful"),
    ]


def test_load_prompts_subsamples_a_file(tmp_path):
    f = tmp_path / "few.txt"
    f.write_text("a\nb\nc\nd\n")
    picked = [r.text for r in load_prompts(str(f), n=2, seed=1)]
    assert len(picked) == 2 and picked == sorted(picked)  # a subset, in file order
    assert picked == [r.text for r in load_prompts(str(f), n=2, seed=1)]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("bad.jsonl", '{"prompt": "ok"}\n{"prompt": \n', {}, r"bad\.jsonl:2: malformed JSON"),
        ("arr.jsonl", '{"prompt": "ok"}\n[1]\n', {}, r"arr\.jsonl:2: expected a JSON object"),
        (
            "nocol.csv",
            "id,text\n1,hi\n",
            {"column": "Question"},
            r"nocol\.csv:1 field 'Question': column not found \(columns: id, text\)",
        ),
        ("none.csv", "id,body\n1,hi\n", {}, r"none\.csv:1 field 'prompt': column not found"),
        ("empty.csv", "prompt\nfine\n  \n", {}, r"empty\.csv:3 field 'prompt': empty prompt"),
        (
            "empty.jsonl",
            '{"prompt": "fine"}\n\n{"prompt": " "}\n',
            {},
            r"empty\.jsonl:3 field 'prompt': missing or empty",
        ),
        (
            "none.jsonl",
            '{"question": "q"}\n',
            {},
            r"none\.jsonl:1 field 'prompt': missing or empty \(need 'prompt', 'text' or",
        ),
        (
            "empty.json",
            '[{"prompt": "a"}, {"text": ""}]',
            {},
            r"empty\.json field '\[1\]\.text': missing or empty",
        ),
        (
            "msgs.jsonl",
            '{"messages": [{"role": "user"}]}\n',
            {},
            r"msgs\.jsonl:1 field 'messages': expected a list of \{role, content\}",
        ),
        (
            "asst.jsonl",
            '{"messages": [{"role": "assistant", "content": "x"}]}\n',
            {},
            r"asst\.jsonl:1 field 'messages': no user turn",
        ),
        (
            "kind.jsonl",
            '{"prompt": "p", "kind": "evil"}\n',
            {},
            r"kind\.jsonl:1 field 'kind': not a prompt record",
        ),
        (
            "rec.jsonl",
            '{"id": "a", "text": "t", "kind": "math", "meta": 3}\n',
            {},
            r"rec\.jsonl:1 field 'meta': not a prompt record",
        ),
        (
            "dup.jsonl",
            '{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n',
            {},
            r"dup\.jsonl:2 field 'id': duplicate id 'x'",
        ),
        ("any.txt", "p\n", {"kind": "nonsense"}, r"unknown prompt kind 'nonsense'"),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, name, content, kwargs, message):
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    with pytest.raises(SafelrmError, match=message) as err:
        load_prompt_file(f, **kwargs)
    assert "\n" not in str(err.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(SafelrmError, match=r"nope\.jsonl: prompts file not found"):
        load_prompt_file(tmp_path / "nope.jsonl")
    blob = tmp_path / "blob.parquet"
    blob.write_bytes(b"\xff\xfe\x00PAR1\x81")
    with pytest.raises(SafelrmError, match=r"blob\.parquet: not a UTF-8 text file"):
        load_prompt_file(blob)
