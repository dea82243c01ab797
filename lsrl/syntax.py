"""The .lsrl parser: source text to the syntax tree of ``lsrl.tree``, or an ``LsrlError``.

The grammar lives in ``grammar.lark`` and runs on lark's LALR parser with its basic lexer and a
post-lexer for newlines; lark's parse tree is then turned into the syntax tree. A syntax error names
what was found and what the parser expected there. The parser is built once per process and is not
meant to be shared between threads.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from lsrl import tree as t
from lsrl.errors import LsrlError
from lsrl.ir.graph import Loc
from lsrl.ir.numbers import exact

GRAMMAR = Path(__file__).with_name("grammar.lark")

# Exponents beyond this make numbers with more digits than any program needs; refusing them keeps a
# typo such as 1e1000000000 from exhausting memory.
MAX_EXPONENT = 1000


class _Newlines:
    """Post-lexer: make newlines mean "end of statement" only where a statement can end.

    Newlines inside ( ) and [ ] are dropped, so expressions may span lines; runs of blank lines
    become one; a newline is inserted before a "}" that closes a block, so "{ return x }" needs
    none; and a newline between "}" and "else" is dropped, so "else" may start a line.
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.unclosed: list[Token] = []  # brackets left open when the last parse stopped

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        brackets = self.unclosed = []
        pending: Token | None = None  # a newline held back until the next token shows its role
        last = ""  # type of the last token passed on
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if (brackets and brackets[-1].type != "LBRACE") or last in ("", "_NL", "LBRACE"):
                    continue
                pending = tok
                continue
            if pending is not None:
                if not (kind == "ELSE" and last == "RBRACE"):
                    yield pending
                    last = "_NL"
                pending = None
            if kind == "RBRACE" and last not in ("_NL", "LBRACE"):
                yield Token.new_borrow_pos("_NL", "", tok)
                last = "_NL"
            if kind in ("LPAR", "LSQB", "LBRACE"):
                brackets.append(tok)
            elif kind in ("RPAR", "RSQB", "RBRACE") and brackets:
                brackets.pop()
            yield tok
            last = kind
        if pending is not None:
            yield pending
        elif last not in ("", "_NL"):
            yield Token("_NL", "", end_pos=0, line=None, column=None)


class _TreeBuilder(Transformer):
    """Turns lark's parse tree into ``lsrl.tree`` nodes, with their source locations."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _loc(self, item: object) -> Loc:
        return Loc(self.file, item.line, item.column)  # type: ignore[attr-defined]

    # --- statements ------------------------------------------------------------------------------
    @v_args(meta=True)
    def start(self, meta, children):
        return list(children)

    @v_args(meta=True)
    def block(self, meta, children):
        return t.Block(tuple(children), self._loc(meta))

    @v_args(meta=True)
    def input_stmt(self, meta, children):
        name, dim, *tokens = children
        return t.Input(str(name), dim, self._loc(meta), tokens[0] if tokens else None)

    @v_args(meta=True)
    def param_stmt(self, meta, children):
        name, value = children
        return t.Param(str(name), value, self._loc(meta))

    @v_args(meta=True)
    def bind_stmt(self, meta, children):
        name, value = children
        return t.Bind(str(name), value, self._loc(meta))

    @v_args(meta=True)
    def state_stmt(self, meta, children):
        name, *rest = children
        arrow = next(i for i, c in enumerate(rest) if isinstance(c, Token) and c.type == "ARROW")
        dim = rest[0] if arrow == 2 else None
        return t.State(str(name), dim, rest[arrow - 1], rest[arrow + 1], self._loc(meta))

    @v_args(meta=True)
    def named_output(self, meta, children):
        name, value = children
        return t.Output(str(name), value, self._loc(meta))

    @v_args(meta=True)
    def output(self, meta, children):
        return t.Output(None, children[0], self._loc(meta))

    @v_args(meta=True)
    def def_stmt(self, meta, children):
        name, *params, body = children
        return t.Def(str(name), tuple(params), body, self._loc(meta))

    @v_args(meta=True)
    def parameter(self, meta, children):
        name = children[0]
        default = children[1] if len(children) > 1 else None
        return t.Parameter(str(name), default, self._loc(name))

    @v_args(meta=True)
    def return_stmt(self, meta, children):
        return t.Return(children[0], self._loc(meta))

    @v_args(meta=True)
    def for_stmt(self, meta, children):
        var, rng, body = children
        return t.For(str(var), rng, body, self._loc(meta))

    @v_args(meta=True)
    def if_stmt(self, meta, children):
        condition, then, *rest = children
        return t.If(condition, then, rest[0] if rest else None, self._loc(meta))

    @v_args(meta=True)
    def import_stmt(self, meta, children):
        return t.Import(_unescape(children[0][1:-1]), self._loc(children[0]))

    @v_args(meta=True)
    def expr_stmt(self, meta, children):
        return t.ExprStmt(children[0], self._loc(meta))

    @v_args(meta=True)
    def range(self, meta, children):
        start, dots, stop = children
        return t.Range(start, stop, self._loc(dots))

    # --- expressions -----------------------------------------------------------------------------
    @v_args(meta=True)
    def conditional(self, meta, children):
        then, condition, otherwise = children
        return t.Conditional(then, condition, otherwise, self._loc(meta))

    def logical(self, children):
        left, op, right = children
        return t.Logical(str(op), left, right, self._loc(op))

    def logical_not(self, children):
        op, operand = children
        return t.Not(operand, self._loc(op))

    def compare(self, children):
        left, op, right = children
        return t.Compare(str(op), left, right, self._loc(op))

    def binary(self, children):
        left, op, right = children
        return t.Binary(str(op), left, right, self._loc(op))

    def unary(self, children):
        op, operand = children
        return t.Unary(str(op), operand, self._loc(op))

    @v_args(meta=True)
    def call(self, meta, children):
        function, *args = children
        positional = tuple(a for a in args if not isinstance(a, t.Keyword))
        keywords = tuple(a for a in args if isinstance(a, t.Keyword))
        if any(isinstance(a, t.Keyword) for a in args[: len(positional)]):
            first = next(a for a in args if isinstance(a, t.Keyword))
            raise LsrlError("a positional argument cannot follow a keyword argument", first.loc)
        return t.Call(function, positional, keywords, function.loc if isinstance(function, t.Name) else self._loc(meta))

    def arg(self, children):
        return children[0]

    def keyword_arg(self, children):
        name, value = children
        return t.Keyword(str(name), value, self._loc(name))

    @v_args(meta=True)
    def index(self, meta, children):
        target, index = children
        return t.Index(target, index, index.loc)

    @v_args(meta=True)
    def slice(self, meta, children):
        target, *rest = children
        colon = next(i for i, c in enumerate(rest) if isinstance(c, Token) and c.type == "COLON")
        start = rest[0] if colon == 1 else None
        stop = rest[colon + 1] if colon + 1 < len(rest) else None
        return t.Slice(target, start, stop, self._loc(rest[colon]))

    @v_args(meta=True)
    def list(self, meta, children):
        return t.ListLiteral(tuple(children), self._loc(meta))

    @v_args(meta=True)
    def comprehension(self, meta, children):
        element, var, rng, *condition = children
        return t.Comprehension(element, str(var), rng, condition[0] if condition else None, self._loc(meta))

    def number(self, children):
        (tok,) = children
        exponent = re.search(r"[eE]([+-]?\d+)$", tok)
        if exponent and abs(int(exponent.group(1))) > MAX_EXPONENT:
            raise LsrlError(f"the number {tok} is too large (exponents go up to {MAX_EXPONENT})", self._loc(tok))
        return t.Number(exact(str(tok)), self._loc(tok))

    def string(self, children):
        (tok,) = children
        return t.String(_unescape(tok[1:-1]), self._loc(tok))

    def name(self, children):
        (tok,) = children
        return t.Name(str(tok), self._loc(tok))


_ESCAPES = {"n": "\n", "t": "\t"}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), body)


@lru_cache(maxsize=None)
def _parser() -> Lark:
    return Lark(
        GRAMMAR.read_text(),
        parser="lalr",
        lexer="basic",
        postlex=_Newlines(),
        propagate_positions=True,
        maybe_placeholders=False,
    )


def parse(text: str, file: str) -> t.Module:
    """Parse one source file; raises ``LsrlError`` at the first syntax error."""
    parser = _parser()
    try:
        tree = parser.parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, file, parser.options.postlex.unclosed) from None
    try:
        statements = _TreeBuilder(file).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, LsrlError):
            raise e.orig_exc from None
        raise
    return t.Module(tuple(statements), file, _end(text, file))


def _end(text: str, file: str) -> Loc:
    """Just past the last non-blank line: where "the program has no output" points."""
    lines = text.split("\n")  # as the lexer counts lines
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return Loc(file, 1, 1)
    return Loc(file, len(lines), len(lines[-1].rstrip()) + 1)


# --- syntax errors -------------------------------------------------------------------------------------
# what an operand can start with ("!" too where a whole expression may follow)
_EXPRESSION_STARTS = {"NAME", "NUMBER", "STRING", "LPAR", "LSQB", "ADD_OP"}
# Tokens that could continue the expression before the error: listing them all buries the one
# token the user most likely forgot (a "]", a "{"), so they are summed up as "an operator".
_CONTINUATIONS = {"ADD_OP", "MUL_OP", "COMPARE", "AND", "OR", "IF", "LPAR", "LSQB"}

_DESCRIPTIONS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "_NL": "end of line",
    "$END": "end of file",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/', '%' or '@'",
    "COMPARE": "a comparison",
}


def _describe_expected(names: set[str], terminals: dict[str, str]) -> str:
    names = set(names)
    summary: list[str] = []
    if _EXPRESSION_STARTS <= names:
        names -= _EXPRESSION_STARTS | {"NOT"}
        summary.append("an expression")
    if {"ADD_OP", "MUL_OP", "COMPARE"} <= names:
        names -= _CONTINUATIONS
        summary.append("an operator")
    parts = [f"'{terminals[n]}'" for n in sorted(names) if n in terminals and n not in _DESCRIPTIONS]
    parts += [_DESCRIPTIONS[n] for n in sorted(names) if n in _DESCRIPTIONS]
    parts += summary
    if len(parts) > 1:
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    return parts[0] if parts else "something else"


def _describe_found(tok: Token, at_end: bool) -> str:
    if at_end:
        return "end of file"
    if tok.type == "_NL":
        return "'}'" if tok.value == "" else "end of line"  # the post-lexer's newline before a "}"
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type == "NUMBER":
        return f"number {tok}"
    if tok.type == "STRING":
        return f"string {tok}"
    return f"'{tok}'"


def _syntax_error(e: UnexpectedInput, text: str, file: str, unclosed: list[Token]) -> LsrlError:
    terminals = {term.name: term.pattern.value for term in _parser().terminals}
    if isinstance(e, UnexpectedCharacters):
        char = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        loc = Loc(file, e.line, e.column)
        if char == '"':
            return LsrlError("unterminated string: a string ends with '\"' on the same line", loc)
        if char == ".":
            return LsrlError("unexpected '.': write decimals with digits on both sides (0.5) and ranges as A..B", loc)
        return LsrlError(f"unexpected character {char!r}", loc)
    assert isinstance(e, UnexpectedToken), e
    tok = e.token
    at_end = tok.type == "$END" or tok.line is None
    expected = _describe_expected(e.accepts or e.expected, terminals)
    if unclosed:
        opener = unclosed[-1]
        opened = Loc(file, opener.line, opener.column)
        if at_end:
            closer = {"(": ")", "[": "]", "{": "}"}[opener.value]
            return LsrlError(f"'{opener}' is never closed: expected '{closer}' before the end of the file", opened)
        if opener.type != "LBRACE" and tok.line > opener.line and _starts_line(text, tok):
            # Inside ( ) or [ ] the newline that should have ended the statement was dropped, so
            # the parser stops at the next line: the open bracket is the likely mistake.
            return LsrlError(
                f"'{opener}' is never closed: unexpected {_describe_found(tok, at_end)} on line {tok.line}; expected {expected}",
                opened,
            )
    loc = _end(text, file) if at_end else Loc(file, tok.line, tok.column)
    return LsrlError(f"unexpected {_describe_found(tok, at_end)}; expected {expected}", loc)


def _starts_line(text: str, tok: Token) -> bool:
    """Whether only blanks precede the token on its line."""
    return not text.split("\n")[tok.line - 1][: tok.column - 1].strip()
