"""The textual form of the program graph: what ``lsrl ir`` shows and what tests write by hand.

    graph {
      %0 = input : 1 name "x" at "more_ones.lsrl":2:1
      %3 = state(%0) : 1 {A=[1x1: (0,0)=1], B=([1x1: (0,0)=1]), bias=[0], init=[0]} name "ones"
      output "y" = %3
    }

Printing and parsing are exact inverses (``ir.equality.same_graph`` holds after a round trip), so
the text can stand in for a graph in tests and bug reports. The grammar (``text.lark``) has one
generic value syntax; each attribute is read with the type ``ir.graph.KINDS`` declares for it, so a
new node kind needs no change here. Exact numbers print as ``p`` or ``p/q`` and floats as
``float(REPR)``, which reads back bit for bit. Matrices list only their non-zero entries. Labels are
printed only where they differ from the ones ``Graph.add`` would give, as runs such as
``"reg"[0:4]``. ``#`` starts a comment.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any, Callable, Sequence

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lsrl.ir.graph import (
    INT,
    KINDS,
    MATRICES,
    MATRIX,
    VECTOR,
    Graph,
    Label,
    Loc,
    Node,
    node_default_labels,
)
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import Number, format_number, parse_number
from lsrl.ir.verify import VerifyError, verify


class TextParseError(ValueError):
    """Malformed graph text, reported as ``LINE:COL: MESSAGE``."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column


# --- printing -------------------------------------------------------------------------------------
def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _vector(values: Sequence[Number]) -> str:
    return "[" + ", ".join(format_number(v) for v in values) + "]"


def _matrix(m: Matrix) -> str:
    entries = ", ".join(f"({i},{j})={format_number(v)}" for (i, j), v in sorted(m.entries.items()))
    return f"[{m.rows}x{m.cols}: {entries}]" if entries else f"[{m.rows}x{m.cols}]"


def _matrices(ms: Sequence[Matrix]) -> str:
    return "(" + ", ".join(_matrix(m) for m in ms) + ")"


_PRINTERS: dict[str, Callable[[Any], str]] = {VECTOR: _vector, MATRIX: _matrix, MATRICES: _matrices, INT: str}


def _implicit_labels(node: Node) -> tuple[Label, ...]:
    """The labels ``Graph.add`` gives a node when none are passed: these are not printed."""
    return node_default_labels(node.id, node.name, node.dim)


def _labels(labels: Sequence[Label]) -> str:
    runs: list[list[Any]] = []  # [name, start, stop]: consecutive indices of one source name
    for label in labels:
        if runs and runs[-1][0] == label.name and runs[-1][2] == label.index:
            runs[-1][2] += 1
        else:
            runs.append([label.name, label.index, label.index + 1])
    return "[" + ", ".join(
        f"{_string(name)}[{start}]" if stop == start + 1 else f"{_string(name)}[{start}:{stop}]"
        for name, start, stop in runs
    ) + "]"


def _node(node: Node) -> str:
    kind = KINDS.get(node.kind)
    if kind is None:
        raise ValueError(f"cannot print %{node.id}: unknown node kind {node.kind!r}")
    text = f"%{node.id} = {node.kind}"
    if node.operands:
        text += "(" + ", ".join(f"%{o}" for o in node.operands) + ")"
    text += f" : {node.dim}"
    if node.attrs:
        undeclared = [k for k in node.attrs if kind.attribute_type(k) is None]
        if undeclared:
            raise ValueError(f"cannot print %{node.id}: {node.kind} has no attribute {sorted(undeclared)[0]!r}")
        text += " {" + ", ".join(f"{k}={_PRINTERS[kind.attribute_type(k)](v)}" for k, v in node.attrs.items()) + "}"
    if node.name:
        text += f" name {_string(node.name)}"
    if node.loc is not None:
        text += f" at {_string(node.loc.file)}:{node.loc.line}:{node.loc.col}"
    if node.labels != _implicit_labels(node):
        text += f" labels {_labels(node.labels)}"
    return text


def print_graph(graph: Graph) -> str:
    """Nodes in the graph's order, then the outputs in order."""
    lines = ["graph {"]
    lines += [f"  {_node(node)}" for node in graph]
    lines += [f"  output {_string(o.name)} = %{o.node}" if o.name else f"  output %{o.node}" for o in graph.outputs]
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- parsing --------------------------------------------------------------------------------------
@cache
def _parser() -> Lark:
    grammar = resources.files("ir").joinpath("text.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", maybe_placeholders=True)


_TERMINALS = {
    "NODE_ID": "a node id like %3",
    "IDENT": "a name",
    "STRING": "a quoted string",
    "INT": "an integer",
    "RATIONAL": "a fraction p/q",
    "SHAPE": "a matrix shape like 2x3",
    "FLOAT": "float(...)",
}


def _describe(terminal: str) -> str:
    if terminal in _TERMINALS:
        return _TERMINALS[terminal]
    return repr(_parser().get_terminal(terminal).pattern.value)


def _end_of(text: str) -> tuple[int, int]:
    """The position just past the last character."""
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


def _syntax_error(e: UnexpectedInput, text: str) -> TextParseError:
    if isinstance(e, UnexpectedCharacters):
        return TextParseError(f"unexpected character {text[e.pos_in_stream]!r}", e.line, e.column)
    if isinstance(e, UnexpectedToken) and e.token.type != "$END":
        expected = ", ".join(sorted(_describe(t) for t in e.expected))
        return TextParseError(f"unexpected {str(e.token)!r}, expected {expected}", e.line, e.column)
    expected = ", ".join(sorted(_describe(t) for t in getattr(e, "expected", ())))
    return TextParseError(f"unexpected end of text, expected {expected}", *_end_of(text))


def _error(message: str, token: Token) -> TextParseError:
    return TextParseError(message, token.line, token.column)


def _items(tree: Tree) -> list:
    """The children of a ``[a ("," a)*]`` list, which is a lone None when empty."""
    return [c for c in tree.children if c is not None]


def _read_string(token: Token) -> str:
    try:
        return json.loads(token)
    except json.JSONDecodeError as e:
        raise _error(f"bad string {token}: {e.msg}", token) from None


# Readers of attribute values: ``value`` is a number token or a vector, matrix or tuple tree;
# errors about its shape point at the attribute's name ``at``.
def _expect(value: Token | Tree, form: str, what: str, at: Token) -> None:
    found = value.data if isinstance(value, Tree) else "number"
    if found != form:
        raise _error(f"{at}: expected {what}, found a {found}", at)


def _read_number(token: Token) -> Number:
    try:
        return parse_number(token)
    except ValueError:
        raise _error(f"not a number: {token}", token) from None


def _read_int(value: Token | Tree, at: Token) -> int:
    _expect(value, "number", "an integer", at)
    if value.type != "INT":
        raise _error(f"expected an integer, found {value}", value)
    return int(value)


def _read_vector(value: Token | Tree, at: Token) -> tuple[Number, ...]:
    _expect(value, "vector", "a vector like [1, 1/2]", at)
    return tuple(_read_number(c) for c in _items(value))


def _read_matrix(value: Token | Tree, at: Token) -> Matrix:
    _expect(value, "matrix", "a matrix like [2x2: (0,0)=1]", at)
    shape, *entry_trees = value.children
    rows, cols = (int(n) for n in shape.split("x"))
    entries: dict[tuple[int, int], Number] = {}
    for entry in entry_trees:
        i, j, number = entry.children
        key = (int(i), int(j))
        if not (0 <= key[0] < rows and 0 <= key[1] < cols):
            raise _error(f"entry {key} outside a {rows}x{cols} matrix", i)
        if key in entries:
            raise _error(f"entry {key} given twice", i)
        entries[key] = _read_number(number)
    return Matrix(rows, cols, entries)


def _read_matrices(value: Token | Tree, at: Token) -> tuple[Matrix, ...]:
    _expect(value, "tuple", "a tuple of matrices like ([1x1: (0,0)=1])", at)
    return tuple(_read_matrix(c, at) for c in _items(value))


_READERS: dict[str, Callable[[Token | Tree, Token], Any]] = {
    VECTOR: _read_vector, MATRIX: _read_matrix, MATRICES: _read_matrices, INT: _read_int,
}


def _read_attributes(tree: Tree | None, kind_token: Token) -> dict[str, Any]:
    kind = KINDS[kind_token]
    attrs: dict[str, Any] = {}
    for attribute in _items(tree) if tree is not None else []:
        name, value = attribute.children
        if kind.attribute_type(name) is None:
            known = sorted([*kind.attributes, *kind.optional])
            raise _error(f"{kind_token} has no attribute {str(name)!r}; it has {known or 'none'}", name)
        if name in attrs:
            raise _error(f"attribute {str(name)!r} given twice", name)
        attrs[str(name)] = _READERS[kind.attribute_type(name)](value, name)
    missing = [n for n in kind.attributes if n not in attrs]
    if missing:
        raise _error(f"{kind_token} needs attribute(s) {', '.join(missing)}", kind_token)
    return attrs


def _read_labels(tree: Tree) -> tuple[Label, ...]:
    labels: list[Label] = []
    for run in _items(tree):
        name, start, stop = run.children
        first = int(start)
        last = int(stop) if stop is not None else first + 1
        if last <= first:
            raise _error(f"empty label range [{first}:{last}]", name)
        labels += [Label(_read_string(name), i) for i in range(first, last)]
    return tuple(labels)


class _Reader:
    """Builds the graph from the parse tree, remembering where each node and reference was written."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.defined: dict[int, Token] = {}
        self.references: list[Token] = []

    def node(self, tree: Tree) -> None:
        id_token, kind_token = tree.children[0], tree.children[1]
        parts = {c.data: c for c in tree.children if isinstance(c, Tree)}
        dim_token = next(c for c in tree.children[2:] if isinstance(c, Token))
        node_id = int(id_token[1:])
        if node_id in self.defined:
            raise _error(f"{id_token} is defined twice (first at line {self.defined[node_id].line})", id_token)
        if kind_token not in KINDS:
            raise _error(f"unknown node kind {str(kind_token)!r}; known kinds: {', '.join(KINDS)}", kind_token)
        operands = _items(parts["operands"]) if "operands" in parts else []
        self.references += operands
        loc = None
        if "loc" in parts:
            file, line, col = parts["loc"].children
            loc = Loc(_read_string(file), int(line), int(col))
        self.graph.add(
            str(kind_token),
            [int(o[1:]) for o in operands],
            int(dim_token),
            _read_attributes(parts.get("attributes"), kind_token),
            name=_read_string(parts["name"].children[0]) if "name" in parts else "",
            loc=loc,
            labels=_read_labels(parts["labels"]) if "labels" in parts else None,
            node_id=node_id,
        )
        self.defined[node_id] = id_token

    def output(self, tree: Tree) -> None:
        name, node = tree.children
        self.references.append(node)
        self.graph.add_output(int(node[1:]), _read_string(name) if name is not None else "")

    def check(self, text: str) -> None:
        for ref in self.references:
            if int(ref[1:]) not in self.defined:
                raise _error(f"{ref} is not defined", ref)
        try:
            verify(self.graph)
        except VerifyError as e:
            # Point at the first node the verifier names, else at the end of the graph.
            named = [int(m) for m in re.findall(r"%(\d+)", str(e)) if int(m) in self.defined]
            if named:
                raise _error(f"invalid graph: {e}", self.defined[named[0]]) from None
            raise TextParseError(f"invalid graph: {e}", *_end_of(text)) from None


def parse_graph(text: str) -> Graph:
    """Read a graph printed by :func:`print_graph` (or written by hand) and verify it."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text) from None
    reader = _Reader()
    for item in tree.children:
        getattr(reader, item.data)(item)
    reader.check(text)
    return reader.graph
