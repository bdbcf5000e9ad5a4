"""Templates cut from statement text: each range gets exactly the edits that fall inside it."""

from __future__ import annotations

import pytest

from router.errors import NotSupported
from router.template import Template, table_part


def test_ranges_get_their_own_edits_and_end_insertions() -> None:
    text = "INSERT INTO t (a) VALUES (1), (2)"
    head_end = text.index("(1)")
    first = (head_end, head_end + 3)
    second = (text.index("(2)"), len(text))
    edits = [
        (12, 13, table_part(0)),  # the table name
        (second[0] + 1, second[0] + 2, 0),  # the literal 2 becomes slot 0
        (first[1] - 1, first[1] - 1, ", 7"),  # an inserted value at the end of row 1
        (first[1], first[1], "!"),  # an insertion at the row's end belongs to it
    ]
    head, row1, row2, tail = Template.build_ranges(
        text, edits, [(0, head_end), first, second, (len(text), len(text))]
    )
    assert head.parts == ("INSERT INTO ", ~0, " (a) VALUES ")
    assert row1.parts == ("(1, 7)!",)
    assert row2.parts == ("(", 0, ")")
    assert tail.parts == ()
    assert row2.render(("42",), ("t_1",)) == "(42)"


def test_overlapping_edits_are_refused() -> None:
    with pytest.raises(NotSupported):
        Template.build("SELECT 1", [(0, 4, "x"), (2, 6, "y")])


def test_a_thousand_row_insert_builds_one_template_per_row() -> None:
    rows = [f"({i})" for i in range(1000)]
    text = "INSERT INTO t VALUES " + ", ".join(rows)
    spans, pos = [], len("INSERT INTO t VALUES ")
    edits = []
    for row in rows:
        spans.append((pos, pos + len(row)))
        edits.append((pos + 1, pos + len(row) - 1, len(edits)))
        pos += len(row) + 2
    templates = Template.build_ranges(text, edits, spans)
    texts = tuple(str(i * 2) for i in range(1000))
    assert [t.render(texts, ()) for t in templates[:3]] == ["(0)", "(2)", "(4)"]
    assert all(t.parts == ("(", i, ")") for i, t in enumerate(templates))
