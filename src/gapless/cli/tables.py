"""Tables that fit the terminal: names shortened in the middle, free text wrapped on whole words.

Why not rich's own table: given too little room it folds cells at any character, so an instance id or a
message breaks mid-word and the screen no longer reads. Here each column says how it may give way:

- ``keep``: short values (numbers, states, ages) shown whole; a value longer than :data:`KEEP_MAX` is cut
  at its end with ``…``;
- ``middle``: names and ids keep their start and end, ``web-7f3a…9c2d``, the parts people tell apart;
- ``wrap``: free text wraps on whole words; only a single word wider than the column is shortened (in
  its middle), never split across lines.

:func:`layout` decides the widths for a terminal width; when even the narrowest form does not fit, the
columns of lowest ``priority`` are left out (``-o json`` shows everything). :func:`table_lines` is the
plain text, a pure function tested as a rule (every line fits, every word that fits stays whole);
:class:`FitTable` is the same for rich, sized to the console it is printed on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len, get_character_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

__all__ = [
    "ELLIPSIS",
    "KEEP_MAX",
    "MIDDLE_MIN",
    "NBSP",
    "WRAP_MIN",
    "Cell",
    "Column",
    "FitTable",
    "Notes",
    "Phrase",
    "Phrases",
    "Segment",
    "hanging",
    "layout",
    "middle",
    "phrase_lines",
    "table_lines",
    "words",
    "wrap",
]

ELLIPSIS = "…"
NBSP = "\u00a0"
"""Write it between a value and its unit (``2.1\u00a0ms``) to keep them on one line; printed as a space."""
KEEP_MAX = 16
"""A ``keep`` column narrower than this is never shortened."""
MIDDLE_MIN = 13
"""A ``middle`` column gives way down to this width: ``web-7f3a…9c2d``."""
WRAP_MIN = 16
"""A ``wrap`` column gives way down to its longest word or this width, whichever is less: words of up to
16 characters are never shortened."""
GAP = 2

Fit = Literal["keep", "middle", "wrap"]
Cell = str | tuple[str, str]
"""A cell: its text, or its text and a rich style."""


@dataclass(frozen=True)
class Column:
    """One column: its header, how its cells give way, and how long it stays when room runs out."""

    header: str
    fit: Fit = "keep"
    priority: int = 0
    """Columns of lower priority are left out first when the table cannot fit otherwise."""
    right: bool = False


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def _style(cell: Cell) -> str:
    return "" if isinstance(cell, str) else cell[1]


_WORD = re.compile(r"[^ \t\n\r\f\v]+")
"""A word ends at ASCII whitespace only: a no-break space (``2.1\u00a0ms``) holds a value to its unit."""


def words(text: str) -> list[str]:
    """The words of ``text``, as wrapping sees them."""
    return _WORD.findall(text)


def _flat(text: str) -> str:
    """One line: newlines, tabs and other whitespace become single spaces."""
    return " ".join(words(text))


def _head(text: str, cells: int) -> str:
    """The longest start of ``text`` at most ``cells`` wide."""
    used = 0
    for i, ch in enumerate(text):
        used += get_character_cell_size(ch)
        if used > cells:
            return text[:i]
    return text


def _tail(text: str, cells: int) -> str:
    """The longest end of ``text`` at most ``cells`` wide."""
    used = 0
    for i in range(len(text) - 1, -1, -1):
        used += get_character_cell_size(text[i])
        if used > cells:
            return text[i + 1 :]
    return text


def middle(text: str, width: int) -> str:
    """``text`` at most ``width`` cells wide, shortened in the middle: ``web-7f3a…9c2d``."""
    text = _flat(text)
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head = _head(text, (room + 1) // 2)
    return head + ELLIPSIS + _tail(text, room - cell_len(head))


def _cut_end(text: str, width: int) -> str:
    text = _flat(text)
    if cell_len(text) <= width:
        return text
    return _head(text, width - 1) + ELLIPSIS if width >= 1 else ""


def wrap(text: str, width: int, later: int | None = None) -> list[str]:
    """``text`` in lines at most ``width`` wide (``later`` for all but the first), broken between words.

    A word wider than its line is shortened in its middle, never split across lines.
    """
    limit = max(width, 1)
    lines: list[str] = []
    line = ""
    for whole in words(text):
        word = whole if cell_len(whole) <= limit else middle(whole, limit)
        if line and cell_len(line) + 1 + cell_len(word) <= limit:
            line += " " + word
            continue
        if line:
            lines.append(line)
            limit = max(later if later is not None else width, 1)
            word = whole if cell_len(whole) <= limit else middle(whole, limit)
        line = word
    lines.append(line)
    return lines


def _natural(column: Column, cells: Sequence[Cell]) -> int:
    return max([cell_len(column.header), *(cell_len(_flat(_text(c))) for c in cells)])


def _longest_word(cells: Iterable[Cell]) -> int:
    return max((cell_len(w) for c in cells for w in words(_text(c))), default=0)


def _floor(column: Column, cells: Sequence[Cell]) -> int:
    """The narrowest the column may get: a wrapped column keeps its words up to :data:`WRAP_MIN` whole."""
    header = cell_len(column.header)
    natural = _natural(column, cells)
    if column.fit == "keep":
        return natural if natural <= KEEP_MAX else max(header, KEEP_MAX)
    if column.fit == "middle":
        return min(natural, max(header, MIDDLE_MIN))
    return min(natural, max(header, min(_longest_word(cells), WRAP_MIN)))


def layout(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> list[int | None]:
    """The width of each column for a table at most ``width`` wide; ``None`` for a column left out."""
    cells = [[row[i] for row in rows] for i in range(len(columns))]
    natural = [_natural(col, cells[i]) for i, col in enumerate(columns)]
    floors = [_floor(col, cells[i]) for i, col in enumerate(columns)]
    shown = list(range(len(columns)))

    def used(sizes: Sequence[int]) -> int:
        return sum(sizes[i] for i in shown) + GAP * (len(shown) - 1)

    # Leave out the lowest priority first, the rightmost of equals; the first column always stays.
    order = sorted(range(1, len(columns)), key=lambda i: (columns[i].priority, -i))
    while shown and used(floors) > width and order:
        shown.remove(order.pop(0))
    sizes = list(floors)
    if used(sizes) > width:  # one column left and still too wide: it gets the whole line
        sizes[shown[0]] = max(width, 1)
    spare = width - used(sizes)
    # Short values first (a whole state or number beats a longer message line), then names and text in turn.
    for kinds in (("keep",), ("middle", "wrap")):
        wanting = [i for i in shown if columns[i].fit in kinds and sizes[i] < natural[i]]
        while spare > 0 and wanting:
            for i in list(wanting):
                if spare == 0:
                    break
                sizes[i] += 1
                spare -= 1
                if sizes[i] >= natural[i]:
                    wanting.remove(i)
    return [sizes[i] if i in shown else None for i in range(len(columns))]


def _cell_lines(column: Column, cell: Cell, width: int) -> list[str]:
    text = _text(cell)
    if column.fit == "wrap":
        return wrap(text, width)
    if column.fit == "middle":
        return [middle(text, width)]
    return [_cut_end(text, width)]


def _pad(text: str, width: int, right: bool) -> str:
    room = max(0, width - cell_len(text))
    return " " * room + text if right else text + " " * room


def _rows(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int
) -> list[list[list[tuple[str, str]]]]:
    """Each printed line as ``(text, style)`` segments, the header first."""
    sizes = layout(columns, rows, width)
    shown = [(i, s) for i, s in enumerate(sizes) if s is not None]
    out: list[list[list[tuple[str, str]]]] = []
    header = [(_pad(_cut_end(columns[i].header, s), s, columns[i].right), "bold") for i, s in shown]
    out.append([header])
    for row in rows:
        cells = [(i, s, _cell_lines(columns[i], row[i], s), _style(row[i])) for i, s in shown]
        height = max(len(lines) for _, _, lines, _ in cells)
        out.append(
            [
                [
                    (_pad(lines[n] if n < len(lines) else "", s, columns[i].right), style)
                    for i, s, lines, style in cells
                ]
                for n in range(height)
            ]
        )
    return out


def _join(segments: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Segments separated by the gap, with the trailing blanks of the line removed."""
    joined: list[tuple[str, str]] = []
    for n, seg in enumerate(segments):
        if n:
            joined.append((" " * GAP, ""))
        joined.append(seg)
    # A no-break space held words together while wrapping; printed, it is a plain space (grep finds "2.1 ms").
    joined = [(text.replace(NBSP, " "), style) for text, style in joined]
    while joined and not joined[-1][0].strip():
        joined.pop()
    if joined:
        text, style = joined[-1]
        joined[-1] = (text.rstrip(), style)
    return joined


def table_lines(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> list[str]:
    """The table as plain lines, each at most ``width`` cells wide."""
    return ["".join(t for t, _ in _join(line)) for block in _rows(columns, rows, width) for line in block]


@dataclass(frozen=True)
class FitTable:
    """A rich renderable: the table laid out for the width of the console it is printed on."""

    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    header: bool = True
    """False: rows only (a followed list prints its header once, with the first rows)."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        del console  # the width comes with the options (a Live display or a narrower parent)
        text = Text(no_wrap=True, overflow="ignore")  # one Text for the table: rich's cost is per Text
        blocks = _rows(self.columns, self.rows, options.max_width)
        for n, line in enumerate(line for block in blocks[0 if self.header else 1 :] for line in block):
            if n:
                text.append("\n")
            for segment, style in _join(line):
                text.append(segment, style=style or None)
        yield text


def hanging(text: str, width: int, indent: int = 2) -> list[str]:
    """``text`` wrapped on whole words to ``width``, every line after the first indented by ``indent``."""
    indent = min(indent, max(width - WRAP_MIN, 0))
    first, *rest = wrap(text, width, width - indent)
    return [first, *(" " * indent + line for line in rest)]


@dataclass(frozen=True)
class Notes:
    """Free text below a table, ``label: text`` a paragraph each, wrapped to the console's width."""

    notes: tuple[tuple[str, str], ...]
    style: str = ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        del console
        for label, text in self.notes:
            for line in hanging(f"{label}: {text}", options.max_width):
                yield Text(line.replace(NBSP, " "), style=self.style, no_wrap=True, overflow="ignore")


Segment = tuple[str, str]
"""Text and its rich style."""
Phrase = tuple[Segment, ...]
"""Words that belong together (``available 4/4``): kept on one line when it fits."""


def phrase_lines(phrases: Sequence[Phrase], width: int, gap: int = GAP) -> list[list[Segment]]:
    """Phrases on lines at most ``width`` wide, ``gap`` spaces apart, broken only between phrases.

    A phrase wider than a whole line is wrapped on its own words instead.
    """
    width = max(width, 1)
    lines: list[list[Segment]] = []
    line: list[Segment] = []
    used = 0
    for phrase in phrases:
        size = sum(cell_len(t) for t, _ in phrase)
        if size > width:
            if line:
                lines.append(line)
            style = next((s for t, s in phrase if t.strip()), "")
            lines += [[(part, style)] for part in wrap("".join(t for t, _ in phrase), width)]
            line, used = [], 0
            continue
        if line and used + gap + size <= width:
            line = [*line, (" " * gap, ""), *phrase]
            used += gap + size
            continue
        if line:
            lines.append(line)
        line, used = list(phrase), size
    if line or not lines:
        lines.append(line)
    return lines


@dataclass(frozen=True)
class Phrases:
    """A rich renderable: phrases laid out by :func:`phrase_lines` for the console's width."""

    phrases: tuple[Phrase, ...]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        del console
        for line in phrase_lines(self.phrases, options.max_width):
            text = Text(no_wrap=True, overflow="ignore")
            for segment, style in line:
                text.append(segment.replace(NBSP, " "), style=style or None)
            yield text
