"""The syntax tree of a .lsrl program: what the parser produces and the elaborator walks.

Every node carries the source location (``ir.graph.Loc``) that diagnostics point at: a statement at
its first token, an operator expression at its operator, a name at the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Union

from gmpy2 import mpq

from lsrl.ir.graph import Loc


# --- expressions ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Number:
    value: mpq
    loc: Loc


@dataclass(frozen=True, slots=True)
class String:
    value: str
    loc: Loc


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    loc: Loc


@dataclass(frozen=True, slots=True)
class Binary:
    """Arithmetic: ``+ - * / % @``."""

    op: str
    left: "Expr"
    right: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "-" or "+"
    operand: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: "Expr"
    right: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Logical:
    """``&&`` and ``||`` on compile-time truth values (short-circuit)."""

    op: str
    left: "Expr"
    right: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Conditional:
    """``then if condition else otherwise``, with a compile-time condition."""

    then: "Expr"
    condition: "Expr"
    otherwise: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Keyword:
    name: str
    value: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Call:
    function: "Expr"
    args: tuple["Expr", ...]
    keywords: tuple[Keyword, ...]
    loc: Loc


@dataclass(frozen=True, slots=True)
class Index:
    target: "Expr"
    index: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Slice:
    target: "Expr"
    start: Optional["Expr"]
    stop: Optional["Expr"]
    loc: Loc


@dataclass(frozen=True, slots=True)
class ListLiteral:
    items: tuple["Expr", ...]
    loc: Loc


@dataclass(frozen=True, slots=True)
class Range:
    """``start..stop``: start inclusive, stop exclusive."""

    start: "Expr"
    stop: "Expr"
    loc: Loc


@dataclass(frozen=True, slots=True)
class Comprehension:
    element: "Expr"
    var: str
    range: Range
    condition: Optional["Expr"]
    loc: Loc


Expr = Union[
    Number, String, Name, Binary, Unary, Compare, Logical, Not, Conditional, Call, Index, Slice,
    ListLiteral, Comprehension,
]


# --- statements ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Block:
    statements: tuple["Stmt", ...]
    loc: Loc


@dataclass(frozen=True, slots=True)
class Input:
    name: str
    dim: Expr
    loc: Loc
    tokens: Optional[Range] = None  # ``in LO..HI``: every input value is an integer in LO..HI-1


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    value: Expr
    loc: Loc


@dataclass(frozen=True, slots=True)
class Bind:
    name: str
    value: Expr
    loc: Loc


@dataclass(frozen=True, slots=True)
class State:
    name: str
    dim: Optional[Expr]
    init: Expr
    update: Expr
    loc: Loc


@dataclass(frozen=True, slots=True)
class Output:
    name: Optional[str]
    value: Expr
    loc: Loc


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    default: Optional[Expr]
    loc: Loc


@dataclass(frozen=True, slots=True)
class Def:
    name: str
    params: tuple[Parameter, ...]
    body: Union[Expr, Block]
    loc: Loc


@dataclass(frozen=True, slots=True)
class Return:
    value: Expr
    loc: Loc


@dataclass(frozen=True, slots=True)
class For:
    var: str
    range: Range
    body: Block
    loc: Loc


@dataclass(frozen=True, slots=True)
class If:
    condition: Expr
    then: Block
    otherwise: Union[Block, "If", None]
    loc: Loc


@dataclass(frozen=True, slots=True)
class Import:
    path: str
    loc: Loc


@dataclass(frozen=True, slots=True)
class ExprStmt:
    expr: Expr
    loc: Loc


Stmt = Union[Input, Param, Bind, State, Output, Def, Return, For, If, Import, ExprStmt]


@dataclass(frozen=True, slots=True)
class Module:
    statements: tuple[Stmt, ...]
    file: str
    end: Loc  # just past the last statement: where a missing statement is reported


# --- name analysis (for diagnostics) -----------------------------------------------------------------
def bound_names(stmt: Stmt) -> set[str]:
    """Names a statement binds in the scope it runs in (an ``if`` binds in its enclosing scope)."""
    if isinstance(stmt, (Input, Param, Bind, State, Def)):
        return {stmt.name}
    if isinstance(stmt, If):
        names: set[str] = set()
        for branch in (stmt.then, stmt.otherwise):
            if isinstance(branch, Block):
                for s in branch.statements:
                    names |= bound_names(s)
            elif isinstance(branch, If):
                names |= bound_names(branch)
        return names
    return set()


def used_names(node: object) -> Iterator[str]:
    """Every name a statement or expression reads (over-approximated: ignores local scopes)."""
    if isinstance(node, Name):
        yield node.id
        return
    if isinstance(node, (tuple, list)):
        for item in node:
            yield from used_names(item)
        return
    fields = getattr(node, "__slots__", ())
    for field in fields:
        value = getattr(node, field)
        if isinstance(value, (str, mpq, Loc)) or value is None:
            continue
        yield from used_names(value)
