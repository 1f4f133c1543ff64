"""Reading packed answers (batching.packed_prompt.read_answers): cut, or nested too deep to parse."""

from __future__ import annotations

import pytest

from batching.packed_prompt import parse_items, read_answers

_ASKS = {"a": "qa", "b": "qb", "c": "qc"}


def test_output_nested_past_the_parser_depth_makes_every_item_suspect() -> None:
    answers = read_answers("[" * 100_000, {"a": "a", "b": "b"})
    assert answers.trusted == {} and answers.suspect == {"a", "b"}
    assert parse_items(f"x\n<items>\n{'[' * 100_000}\n</items>") is None


@pytest.mark.parametrize(
    ("text", "trusted", "suspect", "cut", "read"),
    [
        # Cut inside the second entry: the first is kept, the rest was never reached.
        ('{"answers": [{"id": "a", "answer": "A"}, {"id": "b", "ans', {"a": "A"}, set(), {"b", "c"}, 1),
        # Cut right after a whole entry, newlines and other keys before the list are fine.
        (
            '{"note": [1, {"x": 2}],\n "answers" :[\n {"id":"b","answer":"B"} ,',
            {"b": "B"},
            set(),
            {"a", "c"},
            1,
        ),
        # A duplicate or a shared text among the entries read is suspect as ever.
        (
            '{"answers": [{"id": "a", "answer": "X"}, {"id": "b", "answer": "X"}, {"id"',
            {},
            {"a", "b"},
            {"c"},
            2,
        ),
        ('{"answers": [{"id": "a", "answer": "X"}, {"id": "a", "answer": "Y"}, {', {}, {"a"}, {"b", "c"}, 2),
        # An unknown id, or an entry of another shape, makes every item suspect.
        (
            '{"answers": [{"id": "a", "answer": "A"}, {"id": "z", "answer": "Z"}, {',
            {},
            {"a", "b", "c"},
            set(),
            0,
        ),
        ('{"answers": [{"id": "a", "answer": "A"}, ["b", "B"], {"id": "c"', {}, {"a", "b", "c"}, set(), 0),
        # Nothing whole to read: no salvage, everything suspect.
        ('{"answers": [{"id": "a", "answer": "A', {}, {"a", "b", "c"}, set(), 0),
        (
            'Sure! Here are the answers: {"answers": [{"id": "a", "answer": "A"}',
            {},
            {"a", "b", "c"},
            set(),
            0,
        ),
        ('{"answers": {"id": "a", "answer": "A"}, ', {}, {"a", "b", "c"}, set(), 0),
        # The list ended (only what follows it is broken): a missing entry is missing, not cut.
        ('{"answers": [{"id": "a", "answer": "A"}], "x": ', {"a": "A"}, {"b", "c"}, set(), 0),
    ],
    ids=[
        "cut-in-entry",
        "cut-after-entry",
        "shared-text",
        "duplicate",
        "unknown-id",
        "malformed-entry",
        "nothing-whole",
        "prose-first",
        "not-a-list",
        "list-ended",
    ],
)
def test_a_cut_answer_keeps_its_whole_leading_entries_under_the_same_rules(
    text: str, trusted: dict[str, str], suspect: set[str], cut: set[str], read: int
) -> None:
    answers = read_answers(text, _ASKS)
    assert (answers.trusted, answers.suspect, answers.cut) == (trusted, suspect, cut)
    assert answers.entries_read == read
    assert answers.trusted.keys() | answers.suspect | answers.cut == set(_ASKS)


def test_a_whole_answer_has_nothing_cut() -> None:
    answers = read_answers('{"answers": [{"id": "a", "answer": "A"}]}', _ASKS)
    assert (answers.trusted, answers.suspect, answers.cut, answers.entries_read) == (
        {"a": "A"},
        {"b", "c"},
        frozenset(),
        0,
    )
