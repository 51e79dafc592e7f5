"""Tables fit the width they are given: names shortened in the middle, free text wrapped on whole words."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from gapless.cli.tables import (
    ELLIPSIS,
    WRAP_MIN,
    Column,
    FitTable,
    Phrase,
    hanging,
    layout,
    middle,
    phrase_lines,
    table_lines,
    wrap,
)

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789-_.:/é界"
words = st.text(LETTERS, min_size=1, max_size=30)
texts = st.lists(words, max_size=12).map(" ".join)
columns = st.lists(
    st.builds(
        Column,
        header=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10),
        fit=st.sampled_from(["keep", "middle", "wrap"]),
        priority=st.integers(0, 9),
        right=st.booleans(),
    ),
    min_size=1,
    max_size=9,
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[Column], list[list[str]]]:
    cols = draw(columns)
    rows = draw(st.lists(st.lists(texts, min_size=len(cols), max_size=len(cols)), max_size=6))
    return cols, rows


@given(tables(), st.integers(min_value=40, max_value=200))
def test_every_line_fits(table: tuple[list[Column], list[list[str]]], width: int) -> None:
    """For any rows and any width of 40 or more, no printed line is wider than the width."""
    cols, rows = table
    for line in table_lines(cols, rows, width):
        assert cell_len(line) <= width


@given(tables(), st.integers(min_value=40, max_value=200))
def test_words_of_wrapped_cells_stay_whole(table: tuple[list[Column], list[list[str]]], width: int) -> None:
    """Every word that fits its column appears whole; words up to 16 cells always do."""
    cols, rows = table
    sizes = layout(cols, rows, width)
    printed = {token for line in table_lines(cols, rows, width) for token in line.split()}
    for row in rows:
        for col, size, text in zip(cols, sizes, row, strict=True):
            if col.fit != "wrap" or size is None:
                continue
            assert size >= min(WRAP_MIN, max(cell_len(w) for w in text.split()) if text.split() else 0)
            for word in text.split():
                if cell_len(word) <= size:
                    assert word in printed


@given(tables(), st.integers(min_value=40, max_value=200))
def test_the_first_column_always_stays(table: tuple[list[Column], list[list[str]]], width: int) -> None:
    """Columns may be left out when room runs out, but never the first, and none when all fit whole."""
    cols, rows = table
    sizes = layout(cols, rows, width)
    assert sizes[0] is not None
    natural = [max([cell_len(c.header), *(cell_len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
    if sum(natural) + 2 * (len(cols) - 1) <= width:
        assert sizes == natural


@given(words, st.integers(min_value=1, max_value=40))
def test_middle_keeps_start_and_end(text: str, width: int) -> None:
    """A shortened name keeps its start and its end around one ellipsis, and fits."""
    short = middle(text, width)
    assert cell_len(short) <= width
    if cell_len(text) <= width:
        assert short == text
    elif width > 1:
        head, tail = short.split(ELLIPSIS)
        assert text.startswith(head)
        assert text.endswith(tail)
        assert cell_len(short) >= width - 1  # a wide character may leave one cell unused


@given(texts, st.integers(min_value=1, max_value=60))
def test_wrap_breaks_only_between_words(text: str, width: int) -> None:
    """Wrapped lines fit, and read back as the same words in the same order."""
    lines = wrap(text, width)
    assert all(cell_len(line) <= width for line in lines)
    expected = [w if cell_len(w) <= width else middle(w, width) for w in text.split()]
    assert " ".join(lines).split() == expected


def test_an_instance_id_is_shortened_in_its_middle() -> None:
    """The example of the docs: a long instance id keeps its rollout name and its random end."""
    assert middle("web-7f3a21-0b9c2d", 13) == "web-7f…0b9c2d"


@given(tables(), st.integers(min_value=40, max_value=160))
def test_rich_prints_the_same_lines(table: tuple[list[Column], list[list[str]]], width: int) -> None:
    """Printed on a console of that width, the table is exactly the plain lines (rich adds no folding)."""
    cols, rows = table
    console = Console(width=width, record=True, color_system=None, legacy_windows=False)
    with console.capture() as capture:
        console.print(FitTable(tuple(cols), tuple(tuple(r) for r in rows)), crop=False)
    printed = capture.get().split("\n")[:-1]
    assert [line.rstrip() for line in printed] == table_lines(cols, rows, width)


@given(texts, st.integers(min_value=40, max_value=120))
def test_hanging_paragraphs_fit_and_keep_their_words(text: str, width: int) -> None:
    """A note below a table fits, indents its later lines, and keeps every word that fits whole."""
    lines = hanging(text, width)
    assert all(cell_len(line) <= width for line in lines)
    assert all(line.startswith("  ") for line in lines[1:])
    shown = " ".join(lines).split()
    for word in text.split():
        if cell_len(word) <= width - 2:
            assert word in shown


def test_a_no_break_space_holds_a_value_to_its_unit() -> None:
    """`2.1 ms` written with a no-break space is one word: it never ends one line and starts the next."""
    assert wrap("p99 2.1\u00a0ms vs 6.4\u00a0ms", 10) == ["p99 2.1\u00a0ms", "vs 6.4\u00a0ms"]


phrases = st.lists(st.lists(words, min_size=1, max_size=4).map(lambda ws: ((" ".join(ws), ""),)), max_size=12)


@given(phrases, st.integers(min_value=40, max_value=160))
def test_phrases_fit_and_stay_whole(items: list[Phrase], width: int) -> None:
    """A summary line's phrases (`available 4/4`) wrap only between phrases when they fit a line."""
    lines = ["".join(t for t, _ in line) for line in phrase_lines(items, width)]
    assert all(cell_len(line) <= width for line in lines)
    for phrase in items:
        text = phrase[0][0]
        if cell_len(text) <= width:
            assert any(text in line for line in lines)
    assert " ".join(lines).split() == [
        w if cell_len(w) <= width else middle(w, width) for p in items for w in p[0][0].split()
    ]
