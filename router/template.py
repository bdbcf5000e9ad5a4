"""Physical SQL templates: statement text cut around literal slots and table names.

A cached plan keeps one template per statement part; a cache hit only joins strings: each
literal slot gets the client's own literal text back, each table slot the physical table name of
the data node the unit runs on. A few parts are computed from literal slots (a per-shard LIMIT
of offset + count): those are objects with a `render(texts)` method.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

from router.errors import NotSupported


class Computed(Protocol):
    """A template part whose text is computed from the statement's literal slot texts."""

    def render(self, texts: tuple[str, ...]) -> str: ...


# A template part: text, a literal slot (int >= 0), a table slot j (stored as ~j, i.e. < 0),
# or a part computed from literal slots.
Part = str | int | Computed
# An edit of the statement text: replace text[start:end] with a part or a sequence of parts.
Edit = tuple[int, int, Part | tuple[Part, ...]]


def table_part(ref: int) -> int:
    """The template part standing for table slot `ref`."""
    return ~ref


@dataclass(frozen=True, slots=True)
class Template:
    """One statement part (a whole statement, or an INSERT's head, row or tail) around its slots."""

    parts: tuple[Part, ...]

    @classmethod
    def build(
        cls, text: str, edits: list[Edit], start: int = 0, end: int | None = None
    ) -> Template:
        """The template for text[start:end], with the edits that fall inside that range.

        An insertion (start == end) at the very end of the range is included too.
        """
        end = len(text) if end is None else end
        return cls.build_ranges(text, edits, [(start, end)])[0]

    @classmethod
    def build_ranges(
        cls, text: str, edits: list[Edit], ranges: list[tuple[int, int]]
    ) -> tuple[Template, ...]:
        """One template per (start, end) range of `text`, as build() would make each.

        The edits are sorted once and each range finds its own by bisection: an INSERT of
        many rows has a range and several edits per row, and scanning every edit for every
        row made planning a 1.5 MB INSERT take minutes."""
        ordered = sorted(edits, key=lambda e: (e[0], e[1]))
        starts = [e[0] for e in ordered]
        return tuple(cls._from_sorted(text, ordered, starts, a, b) for a, b in ranges)

    @classmethod
    def _from_sorted(
        cls, text: str, ordered: list[Edit], starts: list[int], start: int, end: int
    ) -> Template:
        parts: list[Part] = []
        pos = start
        first = bisect.bisect_left(starts, start)
        stop = bisect.bisect_left(starts, end)
        # An insertion at the very end of a non-empty range belongs to it.
        while start < end and stop < len(ordered) and ordered[stop][:2] == (end, end):
            stop += 1
        for edit_start, edit_end, part in ordered[first:stop]:
            if edit_start < pos or edit_end > end:
                raise NotSupported(f"this statement form (overlapping rewrites at {edit_start})")
            _add_text(parts, text[pos:edit_start])
            for piece in part if isinstance(part, tuple) else (part,):
                if isinstance(piece, str):
                    _add_text(parts, piece)
                else:
                    parts.append(piece)
            pos = edit_end
        _add_text(parts, text[pos:end])
        return cls(tuple(parts))

    def render(self, texts: tuple[str, ...], names: tuple[str, ...]) -> str:
        """The SQL text with literal slots and table slots filled in."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, int):
                out.append(texts[part] if part >= 0 else names[~part])
            else:
                out.append(part.render(texts))
        return "".join(out)


def _add_text(parts: list[Part], text: str) -> None:
    if not text:
        return
    if parts and isinstance(parts[-1], str):
        parts[-1] += text
    else:
        parts.append(text)
