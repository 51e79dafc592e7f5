"""The tree a parsed condition becomes: frozen nodes that only the evaluator gives meaning to.

Nodes are plain data (comparable, hashable, printable) so a compiled condition can be stored, compared
in a test and evaluated any number of times. ``pos`` is the 0-based offset an error points at; it is
left out of equality so trees can be compared by shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Binary",
    "Call",
    "Compare",
    "Field",
    "Index",
    "ListLiteral",
    "Literal",
    "Logical",
    "Name",
    "Node",
    "Unary",
    "children",
]


@dataclass(frozen=True)
class Literal:
    """A number, string, boolean or null written in the source."""

    value: object
    pos: int = field(compare=False)


@dataclass(frozen=True)
class ListLiteral:
    """``[a, b, c]``."""

    items: tuple[Node, ...]
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Name:
    """A top-level name of the environment: ``result``, ``baseline``, ``args``."""

    name: str
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Field:
    """``target.key``: reads a key of a mapping, never a Python attribute."""

    target: Node
    key: str
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Index:
    """``target[index]``: a list position or a mapping key."""

    target: Node
    index: Node
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Call:
    """A call of one of :data:`FUNCTIONS`."""

    function: str
    args: tuple[Node, ...]
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Unary:
    """``-x``, ``+x`` or ``not x``."""

    op: str
    operand: Node
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Binary:
    """Arithmetic: ``+ - * / %``."""

    op: str
    left: Node
    right: Node
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Logical:
    """``and`` / ``or`` with short-circuit evaluation."""

    op: str
    left: Node
    right: Node
    pos: int = field(compare=False)


@dataclass(frozen=True)
class Compare:
    """A comparison chain: ``operands[0] ops[0] operands[1] ops[1] ...``."""

    ops: tuple[str, ...]
    operands: tuple[Node, ...]
    pos: int = field(compare=False)


Node = Literal | ListLiteral | Name | Field | Index | Call | Unary | Binary | Logical | Compare


def children(node: Node) -> tuple[Node, ...]:
    match node:
        case ListLiteral(items=items):
            return items
        case Field(target=target):
            return (target,)
        case Index(target=target, index=index):
            return (target, index)
        case Call(args=args):
            return args
        case Unary(operand=operand):
            return (operand,)
        case Binary(left=left, right=right) | Logical(left=left, right=right):
            return (left, right)
        case Compare(operands=operands):
            return operands
        case _:
            return ()
