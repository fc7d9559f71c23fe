"""LETOR parsing and validation: each kind of problem is reported with its line numbers."""

from __future__ import annotations

import pytest

from common import letor
from tests.steps.steprunner import FIXTURES

BAD = FIXTURES / "bad"


def parse_bad(name: str, num_features: int = 3, max_label: int = 4) -> str:
    """Parse a file from fixtures/bad and return the LetorError message."""
    with pytest.raises(letor.LetorError) as raised:
        letor.parse_file(str(BAD / name), num_features, max_label)
    return str(raised.value)


def test_parse_line_sparse_features_and_comment():
    parsed, problems = letor.parse_line("3 qid:7 2:0.5 4:-1e-3 # docid = x 1:9", 4, 4)
    assert problems == []
    assert parsed == letor.LetorLine(label=3, qid=7, features=(0.0, 0.5, 0.0, -0.001))


def test_parse_line_skips_blank_and_comment_lines():
    assert letor.parse_line("   \n", 3, 4) == (None, [])
    assert letor.parse_line("# only a comment", 3, 4) == (None, [])


def test_parse_line_reports_each_kind_once():
    parsed, problems = letor.parse_line("7 1:0.5 9:1 12:2", 3, 4)
    assert parsed is None
    assert dict(problems) == {
        letor.LABEL_RANGE: "label 7",
        letor.MISSING_QID: "no qid:N token",
        letor.FEATURE_INDEX: "feature 9",
    }


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("1 qid:1 1:0.5 1:0.6", "feature 1 appears twice"),
        ("1 qid:1 1:inf", "feature 1 value 'inf' is not finite"),
        ("1 qid:-3 1:0.5", "qid '-3' is not a non-negative integer"),
        ("1.5 qid:1 1:0.5", "label '1.5' is not an integer"),
    ],
)
def test_parse_line_malformed_details(text, detail):
    parsed, problems = letor.parse_line(text, 3, 4)
    assert parsed is None
    assert problems == [(letor.MALFORMED, detail)]


def test_valid_fixture_parses():
    path = FIXTURES / "letor" / "part-1.txt"
    rows = letor.parse_file(str(path), 12, 4)
    assert len(rows) == len(path.read_text().splitlines())
    line_number, first = rows[0]
    assert line_number == 1
    assert first.qid == 101
    assert len(first.features) == 12
    # Feature 6 is left out of sparse lines and reads as 0.0.
    assert rows[1][1].features[5] == 0.0


def test_label_out_of_range_lists_lines():
    message = parse_bad("label_out_of_range.txt")
    assert "label_out_of_range.txt: label outside [0, 4]" in message
    assert "on 2 lines: line 2 (label 5), line 4 (label -1)." in message
    assert "check --max-label" in message


def test_feature_index_out_of_range_lists_lines():
    message = parse_bad("feature_index_out_of_range.txt")
    assert "feature index outside [1, 3]" in message
    assert "line 1 (feature 4), line 3 (feature 0)" in message


def test_missing_qid_lists_lines():
    message = parse_bad("missing_qid.txt")
    assert (
        "missing qid on 2 lines: line 3 (no qid:N token), line 5 (qid is not the second token)"
        in message
    )


def test_malformed_tokens_lists_lines():
    message = parse_bad("malformed_tokens.txt")
    assert "malformed tokens on 4 lines" in message
    assert "line 1 (label 'x' is not an integer)" in message
    assert "line 2 (token '1-0.5' is not index:value)" in message
    assert "line 3 (token '1:abc' is not index:value)" in message
    assert "line 5 (qid 'a' is not a non-negative integer)" in message


def test_empty_input_raises():
    message = parse_bad("empty.txt")
    assert message.endswith("empty.txt: no LETOR lines in the file.")


def test_many_problems_show_first_five_and_count():
    message = parse_bad("many_errors.txt")
    assert "invalid LETOR input: 12 invalid lines in 1 file(s)." in message
    assert (
        "on 12 lines: line 4 (label 9), line 5 (label 9), line 6 (label 9), line 7 (label 9), line 8 (label 9) and 7 more."
        in message
    )
    assert "line 9 " not in message


def test_list_input_files_skips_hidden_and_sorts(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.txt", "a.txt", "_SUCCESS", ".a.txt.crc"):
        (tmp_path / name).write_text("1 qid:1 1:1\n")
    found = letor.list_input_files(str(tmp_path))
    assert [path[len(str(tmp_path)) + 1 :] for path in found] == ["a.txt", "b/2.txt"]


def test_list_input_files_without_files_raises(tmp_path):
    with pytest.raises(letor.LetorError, match="no input files found"):
        letor.list_input_files(str(tmp_path))
    with pytest.raises(letor.LetorError, match="not found"):
        letor.list_input_files(str(tmp_path / "missing"))
