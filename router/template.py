"""Physical SQL templates: statement text cut around literal slots and table names.

A cached plan keeps one template per statement part; a cache hit only joins strings: each
literal slot gets the client's own literal text back, each table slot the physical table name of
the data node the unit runs on.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.errors import NotSupported

# A template part: text, a literal slot (int >= 0) or a table slot j (stored as ~j, i.e. < 0).
Part = str | int
# An edit of the statement text: replace text[start:end] with a part.
Edit = tuple[int, int, Part]


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
        """The template for text[start:end], with the edits that fall inside that range."""
        end = len(text) if end is None else end
        parts: list[Part] = []
        pos = start
        for edit_start, edit_end, part in sorted(e for e in edits if start <= e[0] < end):
            if edit_start < pos or edit_end > end:
                raise NotSupported(f"this statement form (overlapping rewrites at {edit_start})")
            _add_text(parts, text[pos:edit_start])
            if isinstance(part, str):
                _add_text(parts, part)
            else:
                parts.append(part)
            pos = edit_end
        _add_text(parts, text[pos:end])
        return cls(tuple(parts))

    def render(self, texts: tuple[str, ...], names: tuple[str, ...]) -> str:
        """The SQL text with literal slots and table slots filled in."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part >= 0:
                out.append(texts[part])
            else:
                out.append(names[~part])
        return "".join(out)


def _add_text(parts: list[Part], text: str) -> None:
    if not text:
        return
    if parts and isinstance(parts[-1], str):
        parts[-1] += text
    else:
        parts.append(text)
