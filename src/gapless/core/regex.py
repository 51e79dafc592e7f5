"""A regular-expression engine for untrusted patterns: a lazily built DFA, linear in the value's length.

The flag service's ``regex`` operator and the router's header routes both use it.

Python's ``re`` backtracks. ``(a+)+b`` never finishes on a long run of ``a``, and ``\\w*\\w*[.]``,
which has neither a backreference nor a nested quantifier, takes over a second to search a
1,024-character value. A pattern written in good faith by a flag author would then stall every
application that evaluates the flag, so rejecting "dangerous" patterns is not enough. This module parses
the pattern into a Thompson NFA and runs it as a DFA built one transition at a time, as RE2 does: a
character whose transition is known costs one dict lookup, an unknown one costs one step of the NFA
(bounded by the pattern's size), so a search is O(len(value) x len(pattern)) for every pattern.

Syntax: a subset of Python's. Literals; ``.`` (any character but a newline); classes ``[a-z0-9_]`` and
``[^...]``; ``\\d \\D \\w \\W \\s \\S`` (Unicode, as in ``re``); escapes ``\\t \\n \\r \\f \\v \\xhh
\\uhhhh \\Uhhhhhhhh`` and a backslash before any punctuation; groups ``( )``, ``(?: )``, ``(?P<name> )``;
``|``; quantifiers ``* + ? {m} {m,} {,n} {m,n}`` (counts up to 100), each optionally lazy (``*?``; the
answer is the same); anchors ``^`` / ``\\A`` (start of the value) and ``$`` / ``\\Z`` (end of the value:
unlike ``re``, ``$`` does not also match before a final newline). Backreferences, lookarounds,
conditional groups, atomic groups, possessive quantifiers, inline flags, word boundaries and ``\\N{...}``
are refused with a message saying so. Matching is a search: the pattern may match anywhere in the value,
as ``re.search`` and LaunchDarkly's ``matches``; anchor it (``^...$``) to match the whole value.

Bounds: patterns of at most 256 characters and 500 NFA states (counted repeats expanded), values of at
most 1,024 characters (longer ones never match), and a bounded transition cache per pattern. The worst
first search measured (a pattern at the state limit, 1,024 distinct characters) takes about 40 ms and
0.1 ms once cached; typical patterns on typical values take about a microsecond.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_PATTERN_LENGTH", "MAX_VALUE_LENGTH", "Regex", "RegexError"]

MAX_PATTERN_LENGTH = 256
MAX_REPEAT = 100
MAX_GROUP_DEPTH = 50
MAX_NFA_NODES = 500
MAX_DFA_TRANSITIONS = 50_000
MAX_DFA_SIZE = 200_000
"""Cache bounds per pattern (transitions, and NFA states summed over DFA states); past either, the cache
is dropped and rebuilt as values need it, so memory stays bounded whatever the values are."""
MAX_VALUE_LENGTH = 1_024
"""Longer values never match: linear time is still time."""

_QUANTIFIER_RE = re.compile(r"\{(\d*)(,?)(\d*)\}")
_GROUP_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}

Predicate = Callable[[str], bool]


class RegexError(ValueError):
    """A pattern the engine does not accept; ``position`` is the 0-based index of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


_NAMED_CLASSES: dict[str, Predicate] = {
    "d": str.isdecimal,
    "D": lambda c: not c.isdecimal(),
    "w": _is_word,
    "W": lambda c: not _is_word(c),
    "s": str.isspace,
    "S": lambda c: not c.isspace(),
}


class _CharSet:
    """One position of the pattern: a literal, ``.``, an escape class or a bracketed class."""

    __slots__ = ("chars", "classes", "negated", "ranges")

    def __init__(
        self,
        chars: frozenset[str] = frozenset(),
        ranges: tuple[tuple[str, str], ...] = (),
        classes: tuple[Predicate, ...] = (),
        *,
        negated: bool = False,
    ) -> None:
        self.chars = chars
        self.ranges = ranges
        self.classes = classes
        self.negated = negated

    def __call__(self, c: str) -> bool:
        hit = (
            c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges) or any(p(c) for p in self.classes)
        )
        return hit != self.negated


_ANY_BUT_NEWLINE = _CharSet(frozenset("\n"), negated=True)


@dataclass(frozen=True)
class _Set:
    charset: _CharSet


@dataclass(frozen=True)
class _Cat:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Alt:
    branches: tuple[_Node, ...]


@dataclass(frozen=True)
class _Repeat:
    body: _Node
    low: int
    high: int | None


@dataclass(frozen=True)
class _Anchor:
    at_end: bool


_Node = _Set | _Cat | _Alt | _Repeat | _Anchor


class _Parser:
    """Recursive descent over the pattern; every refusal is a ``RegexError`` with its position."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.depth = 0

    def fail(self, message: str, position: int | None = None) -> RegexError:
        return RegexError(message, self.i if position is None else position)

    def parse(self) -> _Node:
        node = self.alternation()
        if self.i < len(self.p):
            raise self.fail("unbalanced ')'")
        return node

    def alternation(self) -> _Node:
        branches = [self.concatenation()]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            branches.append(self.concatenation())
        return branches[0] if len(branches) == 1 else _Alt(tuple(branches))

    def concatenation(self) -> _Node:
        items: list[_Node] = []
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            start = self.i
            items.append(self.quantified(self.atom(), start))
        return items[0] if len(items) == 1 else _Cat(tuple(items))

    def quantified(self, atom: _Node, start: int) -> _Node:
        bounds = self.read_quantifier()
        if bounds is None:
            return atom
        if isinstance(atom, _Anchor):
            raise self.fail("nothing to repeat", start)
        if self.p.startswith("?", self.i):
            self.i += 1  # lazy: whether a match exists does not depend on it
        elif self.p.startswith("+", self.i):
            raise self.fail("possessive quantifiers are not supported")
        if self.read_quantifier(peek=True) is not None:
            raise self.fail("multiple repeat")
        return _Repeat(atom, *bounds)

    def read_quantifier(self, *, peek: bool = False) -> tuple[int, int | None] | None:
        if self.i >= len(self.p):
            return None
        c = self.p[self.i]
        bounds: tuple[int, int | None]
        width = 1
        if c == "*":
            bounds = (0, None)
        elif c == "+":
            bounds = (1, None)
        elif c == "?":
            bounds = (0, 1)
        elif c == "{":
            m = _QUANTIFIER_RE.match(self.p, self.i)
            if m is None or not (m.group(1) or m.group(2)):
                return None  # a literal '{', as in re
            low = int(m.group(1)) if m.group(1) else 0
            high = (int(m.group(3)) if m.group(3) else None) if m.group(2) else low
            if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
                raise self.fail(f"repetition counts above {MAX_REPEAT} are not supported")
            if high is not None and high < low:
                raise self.fail("min repeat greater than max repeat")
            bounds, width = (low, high), m.end() - m.start()
        else:
            return None
        if not peek:
            self.i += width
        return bounds

    def atom(self) -> _Node:
        c = self.p[self.i]
        if c in "*+?" or (c == "{" and self.read_quantifier(peek=True) is not None):
            raise self.fail("nothing to repeat")
        self.i += 1
        if c == "(":
            return self.group()
        if c == "[":
            return _Set(self.bracket())
        if c == ".":
            return _Set(_ANY_BUT_NEWLINE)
        if c in "^$":
            return _Anchor(at_end=c == "$")
        if c == "\\":
            item = self.escape(in_class=False)
            if isinstance(item, _Anchor):
                return item
            return _Set(_CharSet(frozenset(item)) if isinstance(item, str) else item)
        return _Set(_CharSet(frozenset(c)))

    def group(self) -> _Node:
        start = self.i - 1
        if self.p.startswith("?", self.i):
            rest = self.p[self.i + 1 : self.i + 4]
            if rest.startswith(":"):
                self.i += 2
            elif rest.startswith("P<"):
                end = self.p.find(">", self.i + 3)
                if end < 0 or not _GROUP_NAME_RE.fullmatch(self.p, self.i + 3, end):
                    raise self.fail("bad group name")
                self.i = end + 1
            elif rest.startswith(("=", "!", "<=", "<!")):
                raise self.fail("lookaround assertions are not supported", start)
            elif rest.startswith("P="):
                raise self.fail("backreferences are not supported", start)
            elif rest.startswith("("):
                raise self.fail("conditional groups are not supported", start)
            elif rest.startswith(">"):
                raise self.fail("atomic groups are not supported", start)
            elif rest.startswith("#"):
                raise self.fail("comments are not supported", start)
            else:
                raise self.fail("inline flags are not supported (use the condition's caseInsensitive)", start)
        self.depth += 1
        if self.depth > MAX_GROUP_DEPTH:
            raise self.fail(f"groups nested more than {MAX_GROUP_DEPTH} deep")
        inner = self.alternation()
        self.depth -= 1
        if self.i >= len(self.p) or self.p[self.i] != ")":
            raise self.fail("missing ')'", start)
        self.i += 1
        return inner

    def escape(self, *, in_class: bool) -> str | _CharSet | _Anchor:
        """After a backslash: one character, a class such as ``\\d``, or an anchor (outside brackets)."""
        if self.i >= len(self.p):
            raise self.fail("bad escape (end of pattern)")
        c = self.p[self.i]
        self.i += 1
        if c in _NAMED_CLASSES:
            return _CharSet(classes=(_NAMED_CLASSES[c],))
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c]
        if c in _HEX_ESCAPES:
            n = _HEX_ESCAPES[c]
            digits = self.p[self.i : self.i + n]
            if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.fail(f"bad escape \\{c}")
            self.i += n
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise self.fail(f"bad escape \\{c}{digits}")
            return chr(code)
        if in_class and c == "b":
            return "\b"
        if not in_class and c in "AZ":
            return _Anchor(at_end=c == "Z")
        if c in "bB":
            raise self.fail("word boundaries are not supported")
        if c.isdigit():
            raise self.fail("backreferences and octal escapes are not supported")
        if c == "N":
            raise self.fail("\\N{...} escapes are not supported")
        if c.isascii() and c.isalpha():
            raise self.fail(f"bad escape \\{c}")
        return c

    def class_item(self) -> str | _CharSet:
        """One item inside brackets: a single character, or a class escape such as ``\\d``."""
        c = self.p[self.i]
        self.i += 1
        if c != "\\":
            return c
        item = self.escape(in_class=True)
        if isinstance(item, _Anchor):  # pragma: no cover -- escape() returns no anchors inside brackets
            raise self.fail("bad escape")
        return item

    def bracket(self) -> _CharSet:
        start = self.i - 1
        negated = self.p.startswith("^", self.i)
        if negated:
            self.i += 1
        chars: set[str] = set()
        ranges: list[tuple[str, str]] = []
        classes: list[Predicate] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise self.fail("unterminated character set", start)
            if self.p[self.i] == "]" and not first:
                self.i += 1
                break
            first = False
            lo = self.class_item()
            if isinstance(lo, _CharSet):
                classes.extend(lo.classes)
                continue
            if self.p.startswith("-", self.i) and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                self.i += 1
                hi = self.class_item()
                if not isinstance(hi, str):
                    raise self.fail("bad character range")
                if hi < lo:
                    raise self.fail(f"bad character range {lo}-{hi}")
                ranges.append((lo, hi))
            else:
                chars.add(lo)
        return _CharSet(frozenset(chars), tuple(ranges), tuple(classes), negated=negated)


# NFA state kinds
_CHAR, _SPLIT, _BOL, _EOL, _MATCH = range(5)


def _never(c: str) -> bool:
    return False


class _Nfa:
    """Thompson's construction in parallel lists: kind, next state(s) and, for CHAR, the predicate."""

    def __init__(self, *, ignore_case: bool) -> None:
        self.kind: list[int] = []
        self.out: list[int] = []
        self.out2: list[int] = []
        self.pred: list[Predicate] = []
        self.ignore_case = ignore_case
        self.folded: dict[_CharSet, Predicate] = {}

    def add(self, kind: int, out: int = -1, out2: int = -1, pred: Predicate = _never) -> int:
        if len(self.kind) >= MAX_NFA_NODES:
            raise RegexError(
                f"pattern too large (more than {MAX_NFA_NODES} states once repeats are expanded)", 0
            )
        self.kind.append(kind)
        self.out.append(out)
        self.out2.append(out2)
        self.pred.append(pred)
        return len(self.kind) - 1

    def build(self, node: _Node, nxt: int) -> int:
        """The start state of ``node`` followed by state ``nxt`` (built backwards)."""
        if isinstance(node, _Set):
            pred: Predicate = node.charset
            if self.ignore_case:
                pred = self.folded.get(node.charset) or self.folded.setdefault(
                    node.charset, _ignoring_case(node.charset)
                )
            return self.add(_CHAR, nxt, pred=pred)
        if isinstance(node, _Cat):
            for child in reversed(node.items):
                nxt = self.build(child, nxt)
            return nxt
        if isinstance(node, _Alt):
            starts = [self.build(b, nxt) for b in node.branches]
            state = starts[-1]
            for s in reversed(starts[:-1]):
                state = self.add(_SPLIT, s, state)
            return state
        if isinstance(node, _Anchor):
            return self.add(_EOL if node.at_end else _BOL, nxt)
        if node.high is None:
            loop = self.add(_SPLIT)
            self.out[loop] = self.build(node.body, loop)
            self.out2[loop] = nxt
            tail = loop
        else:
            tail = nxt
            for _ in range(node.high - node.low):
                tail = self.add(_SPLIT, self.build(node.body, tail), nxt)
        for _ in range(node.low):
            tail = self.build(node.body, tail)
        return tail


def _ignoring_case(charset: _CharSet) -> Predicate:
    """Membership of the character or its other case; a negated class negates that, as ``re`` does."""
    positive = _CharSet(charset.chars, charset.ranges, charset.classes)

    def member(c: str) -> bool:
        return positive(c) or positive(c.lower()) or positive(c.upper())

    if not charset.negated:
        return member

    def non_member(c: str) -> bool:
        return not member(c)

    return non_member


class _State:
    """A DFA state: the NFA states a search can be in, and the transitions found from it so far."""

    __slots__ = ("accept", "accept_at_end", "chars", "nfa", "trans")

    def __init__(
        self, nfa: frozenset[int], chars: tuple[int, ...], accept: bool, accept_at_end: bool
    ) -> None:
        self.nfa = nfa
        self.chars = chars
        self.accept = accept
        self.accept_at_end = accept_at_end
        self.trans: dict[str, _State] = {}


class Regex:
    """A compiled pattern; ``search(value)`` tells whether it matches anywhere in ``value``.

    Thread-safe: the transition cache changes only by single dict operations, and two threads that
    compute the same transition compute equal states.
    """

    __slots__ = (
        "_eclose",
        "_empty_match",
        "_nfa",
        "_restart",
        "_size",
        "_start",
        "_states",
        "_transitions",
        "pattern",
    )

    def __init__(self, pattern: str, *, ignore_case: bool = False) -> None:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise RegexError(f"pattern longer than {MAX_PATTERN_LENGTH} characters", MAX_PATTERN_LENGTH)
        self.pattern = pattern
        tree = _Parser(pattern).parse()
        nfa = _Nfa(ignore_case=ignore_case)
        match = nfa.add(_MATCH)
        start = nfa.build(tree, match)
        self._nfa = nfa
        # Closures of single states, so that a DFA step is a union of precomputed sets.
        self._eclose = [self._closure({s}, at_start=False) for s in range(len(nfa.kind))]
        self._states: dict[frozenset[int], _State] = {}
        self._transitions = 0
        self._size = 0
        self._empty_match = self._reaches_match(frozenset({start}), at_start=True)
        self._start = self._intern(self._closure({start}, at_start=True))
        self._restart = self._eclose[start]  # a search may begin at every position

    def search(self, value: str) -> bool:
        """Whether the pattern matches some part of ``value`` (never, for values over MAX_VALUE_LENGTH)."""
        if len(value) > MAX_VALUE_LENGTH:
            return False
        state = self._start
        if state.accept:
            return True
        if not value:
            return self._empty_match
        for c in value:
            nxt = state.trans.get(c)
            if nxt is None:
                nxt = self._step(state, c)
            if nxt.accept:
                return True
            state = nxt
        return state.accept_at_end

    def _closure(self, seeds: set[int], *, at_start: bool) -> frozenset[int]:
        """The states reachable without consuming a character that matter: CHAR, EOL and MATCH."""
        kind, out, out2 = self._nfa.kind, self._nfa.out, self._nfa.out2
        seen: set[int] = set()
        kept: set[int] = set()
        stack = list(seeds)
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            k = kind[s]
            if k == _SPLIT:
                stack.append(out[s])
                stack.append(out2[s])
            elif k == _BOL:
                if at_start:
                    stack.append(out[s])
            else:
                kept.add(s)
        return frozenset(kept)

    def _reaches_match(self, states: frozenset[int], *, at_start: bool) -> bool:
        """Whether MATCH is reachable from ``states`` at the end of the value (passing EOL states)."""
        kind, out = self._nfa.kind, self._nfa.out
        frontier = self._closure(set(states), at_start=at_start)
        seen: set[int] = set()
        while True:
            if any(kind[s] == _MATCH for s in frontier):
                return True
            eol = {out[s] for s in frontier if kind[s] == _EOL and s not in seen}
            if not eol:
                return False
            seen |= {s for s in frontier if kind[s] == _EOL}
            frontier = self._closure(eol, at_start=at_start)

    def _intern(self, nfa_states: frozenset[int]) -> _State:
        state = self._states.get(nfa_states)
        if state is None:
            kind = self._nfa.kind
            accept = any(kind[s] == _MATCH for s in nfa_states)
            at_end = accept or (
                any(kind[s] == _EOL for s in nfa_states) and self._reaches_match(nfa_states, at_start=False)
            )
            chars = tuple(s for s in nfa_states if kind[s] == _CHAR)
            state = self._states[nfa_states] = _State(nfa_states, chars, accept, at_end)
            self._size += len(nfa_states)
        return state

    def _step(self, state: _State, c: str) -> _State:
        out, pred, eclose = self._nfa.out, self._nfa.pred, self._eclose
        tested: dict[Predicate, bool] = {}  # expanded repeats share one predicate: test it once
        reached = set(self._restart)
        for s in state.chars:
            p = pred[s]
            hit = tested.get(p)
            if hit is None:
                hit = tested[p] = p(c)
            if hit:
                reached |= eclose[out[s]]
        nxt = self._intern(frozenset(reached))
        self._transitions += 1
        if self._transitions > MAX_DFA_TRANSITIONS or self._size > MAX_DFA_SIZE:
            for old in list(self._states.values()):
                old.trans.clear()
            self._states.clear()
            self._transitions = 0
            self._size = len(self._start.nfa)
            self._states[self._start.nfa] = self._start
        state.trans[c] = nxt
        return nxt

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"
