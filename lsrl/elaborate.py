"""The elaborator: runs the compile-time part of a .lsrl program and builds its graph.

Statements run once, top to bottom: loops unroll, branches are chosen, functions are inlined,
imports run their file once. Compile-time values (``lsrl.compiletime``) are computed here and
disappear; every runtime operation goes through the Python builder (``lsrl.builder``), so a
program written in either front end builds the same graph. Before each construct is built,
``program.loc`` is set to its source location, so nodes and diagnostics point back at the source.
"""

from __future__ import annotations

import difflib
import os
from typing import Callable, Mapping, Optional, Sequence

from gmpy2 import mpq

from lsrl import compiletime as ct
from lsrl import tree as t
from lsrl.builder import Program, Value, concat
from lsrl.builtins import Arg, Builtin, prelude
from lsrl.errors import LsrlError, UsageError
from lsrl.ir.graph import Graph, Loc
from lsrl.ir.matrix import Matrix
from lsrl.params import read_override
from lsrl.scope import Function, Scope
from lsrl.syntax import parse

MAX_CALL_DEPTH = 64
MAX_ITERATIONS = 100_000  # per loop or comprehension
MAX_STEPS = 2_000_000  # statements and expressions evaluated in one compilation


class _Return(Exception):
    def __init__(self, value: object):
        super().__init__()
        self.value = value


class Elaborator:
    """Elaborates one program (a main file and what it imports) into one graph."""

    def __init__(self, params: Mapping[str, object] | None = None, sources: dict[str, str] | None = None):
        self.program = Program()
        self.overrides = dict(params or {})
        self.sources = sources if sources is not None else {}
        self.prelude = prelude()
        self.main_scope: Optional[Scope] = None
        # [statements, index of the one running, scope] of every block being executed, innermost
        # last: to tell "used before it is bound" and cycles from unknown names
        self._frames: list[list] = []
        self._functions: list[str] = []  # names of the functions being called, for labels
        self._indices: list[int] = []  # indices of the loops being unrolled, for labels
        self._modules: dict[str, Scope] = {}  # imported files, by real path
        self._importing: list[tuple[str, str]] = []  # (real path, shown path) of imports under way
        self._updates = 0  # state updates being elaborated (no outputs there)
        self._input: Optional[tuple[str, Loc]] = None
        self._outputs: dict[str, Loc] = {}
        self._steps = 0

    # --- entry points ------------------------------------------------------------------------------
    def elaborate(self, text: str, file: str) -> Graph:
        self.sources[file] = text
        return self.elaborate_module(parse(text, file))

    def elaborate_module(self, module: t.Module) -> Graph:
        """Elaborate a parsed main file (its imports are read and parsed on the way)."""
        file = module.file
        self._check_overrides(module)
        scope = self.main_scope = Scope(self.prelude, barrier=True, file=file)
        self.exec_block(module.statements, scope)
        self.program.loc = None
        if self._input is None:
            raise LsrlError("the program has no input: declare one with `input NAME[DIM]`", Loc(file, 1, 1))
        if not self.program.graph.outputs:
            raise LsrlError("the program has no output: add `output EXPR`", module.end)
        return self.program.finish()

    def _check_overrides(self, module: t.Module) -> None:
        declared = [s.name for s in module.statements if isinstance(s, t.Param)]
        for name in self.overrides:
            if name not in declared:
                known = f"its parameters are {', '.join(declared)}" if declared else "it has no parameters"
                raise UsageError(f"unknown parameter '{name}': {module.file} does not declare it ({known}){_suggest(name, declared)}")

    # --- statements --------------------------------------------------------------------------------
    def exec_block(self, statements: Sequence[t.Stmt], scope: Scope) -> None:
        frame = [statements, 0, scope]
        self._frames.append(frame)
        try:
            for i, stmt in enumerate(statements):
                frame[1] = i
                self.exec(stmt, scope)
        finally:
            self._frames.pop()

    def exec(self, stmt: t.Stmt, scope: Scope) -> None:
        self._count_step()
        self.program.loc = stmt.loc
        try:
            self._STATEMENTS[type(stmt)](self, stmt, scope)
        except LsrlError as e:
            if e.loc is None and not isinstance(e, UsageError):
                e.loc = stmt.loc
            raise

    def _input_stmt(self, stmt: t.Input, scope: Scope) -> None:
        self._only_in_main(scope, "an input")
        if self._input is not None:
            name, loc = self._input
            raise LsrlError(f"a second input: the program already takes '{name}' (declared at {_where(loc, stmt.loc)}); a program has exactly one input", stmt.loc)
        self._check_unbound(scope, stmt.name, stmt.loc)
        dim = self._length(stmt.dim, scope, "the input length")
        tokens = None
        if stmt.tokens is not None:
            lo, hi = self._range_bounds(stmt.tokens, scope)
            if lo >= hi:
                raise LsrlError(f"the input's tokens {lo}..{hi} are none: the range is empty (LO..HI holds LO to HI-1)", stmt.tokens.loc)
            tokens = range(lo, hi)
        self.program.loc = stmt.loc
        value = self.program.input(dim, self._label(stmt.name), tokens=tokens)
        self._input = (stmt.name, stmt.loc)
        scope.bind(stmt.name, value, stmt.loc)

    def _param_stmt(self, stmt: t.Param, scope: Scope) -> None:
        if scope is not self.main_scope or len(self._frames) != 1:
            raise LsrlError("a param is declared at the top level of the main program, outside any block", stmt.loc)
        self._check_unbound(scope, stmt.name, stmt.loc)
        value = self.eval(stmt.value, scope)
        if ct.holds_runtime(value) or isinstance(value, Value):
            raise LsrlError(f"the value of param '{stmt.name}' must be known at compile time, got {ct.describe(value)}", stmt.value.loc)
        if stmt.name in self.overrides:
            value = read_override(stmt.name, self.overrides[stmt.name], value)
        scope.bind(stmt.name, value, stmt.loc)

    def _bind_stmt(self, stmt: t.Bind, scope: Scope) -> None:
        self._check_unbound(scope, stmt.name, stmt.loc)
        value = self.eval(stmt.value, scope)
        if isinstance(value, Value) or ct.holds_runtime(value):
            self._only_in_main(scope, "a runtime value")
            self.program.loc = stmt.loc
            self._name_runtime(value, self._label(stmt.name))
        scope.bind(stmt.name, value, stmt.loc)

    def _name_runtime(self, value: object, label: str) -> None:
        if isinstance(value, Value):
            self.program.name(value, label)
        elif type(value) is tuple:
            for i, item in enumerate(value):
                self._name_runtime(item, f"{label}[{i}]")

    def _state_stmt(self, stmt: t.State, scope: Scope) -> None:
        self._only_in_main(scope, "a state")
        self._check_unbound(scope, stmt.name, stmt.loc)
        init = self.eval(stmt.init, scope)
        if not (ct.is_number(init) or ct.is_vector(init)):
            raise LsrlError(f"the initial value of a state must be a compile-time number or vector, got {ct.describe(init)}", stmt.init.loc)
        if stmt.dim is not None:
            dim = self._length(stmt.dim, scope, "a state's length")
        else:
            dim = len(init) if ct.is_vector(init) else 1  # type: ignore[arg-type]
        update_scope = Scope(scope)

        def update(previous: Value) -> object:
            update_scope.bind(stmt.name, previous, stmt.loc)
            self._updates += 1
            try:
                result = self.eval(stmt.update, update_scope)
                result = self.runtime(result, f"the update of state '{stmt.name}'", stmt.update.loc)
            finally:
                self._updates -= 1
            self.program.loc = stmt.update.loc
            return result

        self.program.loc = stmt.loc
        value = self.program.state(ct.to_ir(init), update, dim, self._label(stmt.name))
        scope.bind(stmt.name, value, stmt.loc)

    def _output_stmt(self, stmt: t.Output, scope: Scope) -> None:
        self._only_in_main(scope, "an output")
        if self._updates:
            raise LsrlError("an output cannot be declared inside a state update", stmt.loc)
        label = self._label(stmt.name) if stmt.name else ""
        if label and label in self._outputs:
            raise LsrlError(f"output '{label}' is already declared (at {_where(self._outputs[label], stmt.loc)})", stmt.loc)
        value = self.runtime(self.eval(stmt.value, scope), "an output", stmt.value.loc)
        self.program.loc = stmt.loc
        self.program.output(value, label)
        if label:
            self._outputs[label] = stmt.loc

    def _def_stmt(self, stmt: t.Def, scope: Scope) -> None:
        self._check_unbound(scope, stmt.name, stmt.loc)
        defaults: dict[str, object] = {}
        seen: set[str] = set()
        for p in stmt.params:
            if p.name in seen:
                raise LsrlError(f"parameter '{p.name}' appears twice", p.loc)
            seen.add(p.name)
            if p.default is not None:
                defaults[p.name] = self.eval(p.default, scope)
            elif defaults:
                raise LsrlError(f"parameter '{p.name}' needs a default: it follows a parameter with one", p.loc)
        scope.bind(stmt.name, Function(stmt.name, stmt.params, defaults, stmt.body, scope, stmt.loc), stmt.loc)

    def _return_stmt(self, stmt: t.Return, scope: Scope) -> None:
        if not self._functions:
            raise LsrlError("return outside a function", stmt.loc)
        raise _Return(self.eval(stmt.value, scope))

    def _for_stmt(self, stmt: t.For, scope: Scope) -> None:
        self._check_unbound(scope, stmt.var, stmt.loc)
        for i in self._range(stmt.range, scope):
            body = Scope(scope)
            body.bind(stmt.var, mpq(i), stmt.loc)
            self._indices.append(i)
            try:
                self.exec_block(stmt.body.statements, body)
            finally:
                self._indices.pop()

    def _if_stmt(self, stmt: t.If, scope: Scope) -> None:
        branch = stmt.then if self._truth(stmt.condition, scope, "the condition of an if") else stmt.otherwise
        if isinstance(branch, t.Block):
            self.exec_block(branch.statements, scope)  # an if is not a scope: its bindings stay
        elif branch is not None:
            self.exec(branch, scope)

    def _import_stmt(self, stmt: t.Import, scope: Scope) -> None:
        if scope.file is None or len(self._frames) != 1:
            raise LsrlError("an import belongs at the top level of a file, outside any block", stmt.loc)
        shown = os.path.normpath(os.path.join(os.path.dirname(stmt.loc.file), stmt.path))
        real = os.path.realpath(shown)
        chain = [path for path, _ in self._importing]
        if real in chain or real == os.path.realpath(self.main_scope.file or ""):  # type: ignore[union-attr]
            cycle = [self.main_scope.file] + [s for _, s in self._importing] + [shown]  # type: ignore[union-attr, list-item]
            raise LsrlError(f"import cycle: {' imports '.join(cycle)}", stmt.loc)
        if real not in self._modules:
            self._modules[real] = self._run_import(shown, real, stmt.loc)
        for name, binding in self._modules[real].names.items():
            previous = scope.local(name)
            if previous is not None and previous.value is binding.value:
                continue  # the same definition, imported along another path
            if previous is not None:
                raise LsrlError(f"importing \"{stmt.path}\" binds '{name}', which is already bound (at {_where(previous.loc, stmt.loc)})", stmt.loc)
            scope.bind(name, binding.value, stmt.loc)

    def _run_import(self, shown: str, real: str, loc: Loc) -> Scope:
        try:
            with open(real, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise LsrlError(f"cannot read \"{shown}\": {reason}", loc) from None
        self.sources[shown] = text
        module = parse(text, shown)
        scope = Scope(self.prelude, barrier=True, file=shown, imported=True)
        outer_frames, self._frames = self._frames, []
        self._importing.append((real, shown))
        try:
            self.exec_block(module.statements, scope)
        finally:
            self._importing.pop()
            self._frames = outer_frames
        return scope

    def _expr_stmt(self, stmt: t.ExprStmt, scope: Scope) -> None:
        if not isinstance(stmt.expr, t.Call):
            raise LsrlError("this expression's value is unused: bind it (NAME = ...) or output it", stmt.expr.loc)
        self._call(stmt.expr, scope, want_value=False)

    _STATEMENTS: dict[type, Callable] = {
        t.Input: _input_stmt, t.Param: _param_stmt, t.Bind: _bind_stmt, t.State: _state_stmt,
        t.Output: _output_stmt, t.Def: _def_stmt, t.Return: _return_stmt, t.For: _for_stmt,
        t.If: _if_stmt, t.Import: _import_stmt, t.ExprStmt: _expr_stmt,
    }

    # --- statement helpers -------------------------------------------------------------------------
    def _check_unbound(self, scope: Scope, name: str, loc: Loc) -> None:
        previous = scope.local(name)
        if previous is not None:
            raise LsrlError(
                f"'{name}' is already bound (at {_where(previous.loc, loc)}); a name is bound once"
                " (for a value that changes from step to step, use a state)",
                loc,
            )

    def _only_in_main(self, scope: Scope, what: str) -> None:
        if scope.namespace_root().imported:
            raise LsrlError(f"an imported file defines only functions and compile-time values; {what} belongs in the main program")

    def _label(self, name: str) -> str:
        """The IR name of a source name: with the functions it is inside and the loop indices."""
        label = "/".join([*self._functions, name])
        if self._indices:
            label += "[" + ",".join(str(i) for i in self._indices) + "]"
        return label

    def _count_step(self) -> None:
        self._steps += 1
        if self._steps > MAX_STEPS:
            raise LsrlError(f"the program takes more than {MAX_STEPS} elaboration steps: is a loop or a recursion unbounded?")

    # --- expressions -------------------------------------------------------------------------------
    def eval(self, expr: t.Expr, scope: Scope) -> object:
        self._count_step()
        try:
            return self._EXPRESSIONS[type(expr)](self, expr, scope)
        except LsrlError as e:
            if e.loc is None and not isinstance(e, UsageError):
                e.loc = expr.loc
            raise

    def _number(self, expr: t.Number, scope: Scope) -> object:
        return expr.value

    def _string(self, expr: t.String, scope: Scope) -> object:
        return expr.value

    def _name(self, expr: t.Name, scope: Scope) -> object:
        binding = scope.lookup(expr.id)
        if binding is None:
            raise self._unknown_name(expr.id, expr.loc, scope)
        return binding.value

    def _binary(self, expr: t.Binary, scope: Scope) -> object:
        left = self.eval(expr.left, scope)
        right = self.eval(expr.right, scope)
        return self.binary(expr.op, left, right, expr.loc)

    def binary(self, op: str, a: object, b: object, loc: Loc) -> object:
        """``a op b`` for any two values: compile-time arithmetic, or nodes through the builder."""
        self.program.loc = loc
        if isinstance(a, Value) or isinstance(b, Value) or ct.holds_runtime(a) or ct.holds_runtime(b):
            return self._runtime_binary(op, self._operand(a, op, loc), self._operand(b, op, loc))
        return ct.binary(op, a, b)

    def _operand(self, v: object, op: str, loc: Loc) -> object:
        if isinstance(v, Value):
            return v
        if ct.holds_runtime(v):
            return self.runtime(v, "an operand", loc)
        if ct.is_number(v) or ct.is_vector(v):
            return ct.to_ir(v)
        if ct.is_matrix(v) and op == "@":
            return ct.as_matrix(v)
        if ct.is_matrix(v):
            raise LsrlError(f"cannot apply '{op}' to a matrix and a runtime vector (a matrix applies as M @ x)")
        raise LsrlError(f"cannot apply '{op}' to {ct.describe(v)} and a runtime vector")

    def _runtime_binary(self, op: str, a: object, b: object) -> object:
        if op == "@":
            if isinstance(a, Value):
                raise LsrlError("'@' applies a compile-time matrix from the left: write M @ x")
            if ct.is_vector(a):
                a = Matrix.from_rows([a])  # a row vector: the dot product with x
            if not isinstance(a, Matrix):
                raise LsrlError(f"'@' needs a compile-time matrix (or vector) on the left, got {ct.describe(a)}")
            return b.__rmatmul__(a)  # type: ignore[union-attr]
        if op == "%":
            raise LsrlError("'%' works on compile-time numbers only")
        lengths = [v.dim if isinstance(v, Value) else (1 if ct.is_number(v) else len(v)) for v in (a, b)]  # type: ignore[arg-type]
        if lengths[0] != lengths[1] and 1 not in lengths:
            raise LsrlError(
                f"length mismatch: '{op}' of {ct.describe(a)} and {ct.describe(b)}"
                " (lengths must be equal, or one side has length 1)"
            )
        if op == "/":
            if isinstance(b, Value):
                raise LsrlError("division by a runtime value is not allowed (divide by compile-time numbers only)")
            if any(x == 0 for x in ((b,) if ct.is_number(b) else b)):  # type: ignore[union-attr]
                raise LsrlError("division by zero")
            return a / b  # type: ignore[operator]
        if isinstance(a, Value):
            return {"+": a.__add__, "-": a.__sub__, "*": a.__mul__}[op](b)
        return {"+": b.__radd__, "-": b.__rsub__, "*": b.__rmul__}[op](a)  # type: ignore[union-attr]

    def _unary(self, expr: t.Unary, scope: Scope) -> object:
        operand = self.eval(expr.operand, scope)
        self.program.loc = expr.loc
        if isinstance(operand, Value) or ct.holds_runtime(operand):
            value = self.runtime(operand, "an operand", expr.loc)
            return -value if expr.op == "-" else value
        if expr.op == "+":
            if ct.is_number(operand) or type(operand) is tuple or isinstance(operand, Matrix):
                return operand
            raise LsrlError(f"cannot apply '+' to {ct.describe(operand)}")
        return ct.negate(operand)

    def _compare(self, expr: t.Compare, scope: Scope) -> object:
        left = self.eval(expr.left, scope)
        right = self.eval(expr.right, scope)
        for v in (left, right):
            if isinstance(v, Value) or ct.holds_runtime(v):
                raise LsrlError(
                    f"'{expr.op}' compares compile-time values, got {ct.describe(v)}; "
                    "compare runtime values with larger, smaller, eq or neq",
                    expr.loc,
                )
        return ct.compare(expr.op, left, right)

    def _logical(self, expr: t.Logical, scope: Scope) -> object:
        left = self._truth(expr.left, scope, f"the left side of '{expr.op}'")
        if left == (expr.op == "||"):
            return left
        return self._truth(expr.right, scope, f"the right side of '{expr.op}'")

    def _not(self, expr: t.Not, scope: Scope) -> object:
        return not self._truth(expr.operand, scope, "the operand of '!'")

    def _conditional(self, expr: t.Conditional, scope: Scope) -> object:
        chosen = expr.then if self._truth(expr.condition, scope, "the condition of `A if COND else B`") else expr.otherwise
        return self.eval(chosen, scope)

    def _truth(self, expr: t.Expr, scope: Scope, what: str) -> bool:
        value = self.eval(expr, scope)
        if isinstance(value, bool):
            return value
        hint = " (for a choice at run time, use ifelse)" if isinstance(value, Value) else " (a comparison such as n > 0)"
        raise LsrlError(f"{what} must be a compile-time truth value, got {ct.describe(value)}{hint}", expr.loc)

    def _call_expr(self, expr: t.Call, scope: Scope) -> object:
        return self._call(expr, scope, want_value=True)

    def _call(self, expr: t.Call, scope: Scope, want_value: bool) -> object:
        function = self.eval(expr.function, scope)
        args = [Arg(self.eval(a, scope), a.loc) for a in expr.args]
        keywords: dict[str, Arg] = {}
        for k in expr.keywords:
            if k.name in keywords:
                raise LsrlError(f"argument '{k.name}' is given twice", k.loc)
            keywords[k.name] = Arg(self.eval(k.value, scope), k.value.loc)
        self.program.loc = expr.loc
        if isinstance(function, Function):
            result = self._call_function(function, args, keywords, expr.loc)
        elif isinstance(function, Builtin):
            result = self._call_builtin(function, args, keywords, expr.loc)
        else:
            what = f"'{expr.function.id}' is" if isinstance(expr.function, t.Name) else "this is"
            raise LsrlError(f"{what} {ct.describe(function)}, not a function", expr.loc)
        if result is None and want_value:
            raise LsrlError(f"{_callee(expr)} returns no value", expr.loc)
        return result

    def _call_function(self, fn: Function, args: list[Arg], keywords: dict[str, Arg], loc: Loc) -> object:
        names = tuple(p.name for p in fn.params)
        values = _bind_arguments(fn.name, names, fn.defaults, args, keywords, loc)
        if len(self._functions) >= MAX_CALL_DEPTH:
            raise LsrlError(f"calls nest more than {MAX_CALL_DEPTH} deep: does '{fn.name}' call itself without end?", loc)
        scope = Scope(fn.closure, barrier=True)
        for p, arg in zip(fn.params, values):
            scope.bind(p.name, arg.value, p.loc)
        self._functions.append(fn.name)
        try:
            with self.program.scope(fn.name):
                if isinstance(fn.body, t.Block):
                    try:
                        self.exec_block(fn.body.statements, scope)
                    except _Return as r:
                        return r.value
                    return None
                return self.eval(fn.body, scope)
        finally:
            self._functions.pop()

    def _call_builtin(self, fn: Builtin, args: list[Arg], keywords: dict[str, Arg], loc: Loc) -> object:
        if fn.variadic:
            if keywords:
                raise LsrlError(f"{fn.name} takes no keyword arguments", next(iter(keywords.values())).loc)
            return fn.apply(self, args)
        values = _bind_arguments(fn.name, fn.params, fn.defaults, args, keywords, loc)
        self.program.loc = loc
        return fn.apply(self, values)

    def _index(self, expr: t.Index, scope: Scope) -> object:
        target = self.eval(expr.target, scope)
        index = self.eval(expr.index, scope)
        if isinstance(index, Value) or ct.holds_runtime(index):
            raise LsrlError(f"an index must be a compile-time integer, got {ct.describe(index)}", expr.loc)
        i = ct.as_integer(index, "an index")
        self.program.loc = expr.loc
        items = self._indexable(target)
        n = items.dim if isinstance(items, Value) else len(items)
        if not -n <= i < n:
            raise LsrlError(f"index {i} is out of range for {ct.describe(target)}", expr.loc)
        return items[i]

    def _slice(self, expr: t.Slice, scope: Scope) -> object:
        target = self.eval(expr.target, scope)
        items = self._indexable(target)
        n = items.dim if isinstance(items, Value) else len(items)
        bounds = []
        for bound, default in ((expr.start, 0), (expr.stop, n)):
            if bound is None:
                bounds.append(default)
                continue
            value = self.eval(bound, scope)
            if isinstance(value, Value) or ct.holds_runtime(value):
                raise LsrlError(f"a slice bound must be a compile-time integer, got {ct.describe(value)}", bound.loc)
            try:
                i = ct.as_integer(value, "a slice bound")
            except LsrlError as e:
                raise LsrlError(e.message, bound.loc) from None
            bounds.append(i + n if i < 0 else i)
        start, stop = bounds
        if not 0 <= start <= stop <= n or (isinstance(items, Value) and start == stop):
            raise LsrlError(f"slice [{start}:{stop}] is out of range for {ct.describe(target)}", expr.loc)
        self.program.loc = expr.loc
        return items[start:stop]

    def _indexable(self, target: object) -> object:
        if isinstance(target, (Value, tuple)):
            return target
        if isinstance(target, Matrix):
            return ct.rows(target)
        raise LsrlError(f"cannot index {ct.describe(target)}")

    def _list(self, expr: t.ListLiteral, scope: Scope) -> object:
        return tuple(self.eval(item, scope) for item in expr.items)

    def _comprehension(self, expr: t.Comprehension, scope: Scope) -> object:
        self._check_unbound(scope, expr.var, expr.loc)
        out = []
        for i in self._range(expr.range, scope):
            inner = Scope(scope)
            inner.bind(expr.var, mpq(i), expr.loc)
            self._indices.append(i)
            try:
                if expr.condition is None or self._truth(expr.condition, inner, "the condition of a comprehension"):
                    out.append(self.eval(expr.element, inner))
            finally:
                self._indices.pop()
        return tuple(out)

    def _range_bounds(self, rng: t.Range, scope: Scope) -> tuple[int, int]:
        bounds = []
        for bound in (rng.start, rng.stop):
            value = self.eval(bound, scope)
            try:
                bounds.append(ct.as_integer(value, "a range bound"))
            except LsrlError as e:
                raise LsrlError(e.message, bound.loc) from None
        return bounds[0], bounds[1]

    def _range(self, rng: t.Range, scope: Scope) -> range:
        start, stop = self._range_bounds(rng, scope)
        if stop - start > MAX_ITERATIONS:
            raise LsrlError(f"the range {start}..{stop} has more than {MAX_ITERATIONS} steps to unroll", rng.loc)
        return range(start, stop)

    def _length(self, expr: t.Expr, scope: Scope, what: str) -> int:
        value = self.eval(expr, scope)
        try:
            n = ct.as_integer(value, what)
        except LsrlError as e:
            raise LsrlError(e.message, expr.loc) from None
        if n < 1:
            raise LsrlError(f"{what} must be at least 1, got {n}", expr.loc)
        return ct.check_length(n, what)

    _EXPRESSIONS: dict[type, Callable] = {
        t.Number: _number, t.String: _string, t.Name: _name, t.Binary: _binary, t.Unary: _unary,
        t.Compare: _compare, t.Logical: _logical, t.Not: _not, t.Conditional: _conditional,
        t.Call: _call_expr, t.Index: _index, t.Slice: _slice, t.ListLiteral: _list,
        t.Comprehension: _comprehension,
    }

    # --- runtime values ----------------------------------------------------------------------------
    def runtime(self, v: object, what: str, loc: Loc) -> Value:
        """``v`` as one runtime vector: a list of runtime values is concatenated, and a number or
        compile-time vector becomes a constant."""
        if isinstance(v, Value):
            return v
        if ct.holds_runtime(v):
            return self.concat([Arg(item, loc) for item in v])  # type: ignore[union-attr]
        if ct.is_number(v) or ct.is_vector(v):
            self.program.loc = loc
            return self.program.const(ct.to_ir(v))
        raise LsrlError(f"{what} must be a runtime vector or a number, got {ct.describe(v)}", loc)

    def concat(self, parts: Sequence[Arg]) -> Value:
        values = []
        for part in parts:
            v = part.value
            if isinstance(v, Value):
                values.append(v)
            elif ct.holds_runtime(v):
                values.append(self.runtime(v, "a part of concat", part.loc))
            elif ct.is_number(v) or ct.is_vector(v):
                values.append(ct.to_ir(v))
            else:
                raise LsrlError(f"concat joins vectors and numbers, got {ct.describe(v)}", part.loc)
        return concat(*values)

    # --- unknown names: typos, forward references and cycles ---------------------------------------
    def _unknown_name(self, name: str, loc: Loc, scope: Scope) -> LsrlError:
        visible = scope.chain()
        for statements, i, block_scope in reversed(self._frames):
            if not any(block_scope is s for s in visible):
                continue  # a block whose names this scope could not see even once bound
            current = statements[i]
            if name in t.bound_names(current) and not isinstance(current, (t.For, t.If)):
                return LsrlError(
                    f"'{name}' is used in its own definition; a value cannot depend on itself within a step"
                    f" (for the previous step's value, declare a state: state {name}[DIM] = INIT <- ...)",
                    loc,
                )
            for later in statements[i + 1:]:
                if name in t.bound_names(later):
                    return self._forward_reference(name, loc, current, later, statements[i + 1:])
        return LsrlError(f"unknown name '{name}'{_suggest(name, scope.visible_names())}", loc)

    def _forward_reference(self, name: str, loc: Loc, current: t.Stmt, later: t.Stmt, following: Sequence[t.Stmt]) -> LsrlError:
        where = _where(later.loc, loc)
        defining = t.bound_names(current)
        if defining and _depends_on(later, defining, following):
            first = sorted(defining)[0]
            if isinstance(current, t.State):
                return LsrlError(
                    f"cycle: the update of state '{first}' uses '{name}' (bound at {where}), which depends on"
                    f" the new value of '{first}'; an update may use only values that do not depend on its"
                    f" state (inside the update, '{first}' is the previous value)",
                    loc,
                )
            return LsrlError(
                f"cycle: '{name}' (bound at {where}) depends on '{first}', which uses '{name}'; values of"
                " one step cannot depend on each other in a circle (to use a previous step's value, keep it in a state)",
                loc,
            )
        return LsrlError(f"'{name}' is used before it is bound (at {where}); move its binding above this use", loc)


def _depends_on(stmt: t.Stmt, targets: set[str], following: Sequence[t.Stmt]) -> bool:
    """Whether ``stmt`` reads one of ``targets``, directly or through later statements."""
    seen: set[str] = set()
    pending = set(t.used_names(stmt))
    while pending:
        name = pending.pop()
        if name in targets:
            return True
        if name in seen:
            continue
        seen.add(name)
        for s in following:
            if name in t.bound_names(s):
                pending |= set(t.used_names(s))
    return False


def _bind_arguments(name: str, params: tuple[str, ...], defaults: Mapping[str, object],
                    args: list[Arg], keywords: dict[str, Arg], loc: Loc) -> list[Arg]:
    required = [p for p in params if p not in defaults]
    if len(args) > len(params):
        raise LsrlError(f"wrong number of arguments: {_signature(name, params, required)}, got {len(args)}", loc)
    values = dict(zip(params, args))
    for key, arg in keywords.items():
        if key not in params:
            raise LsrlError(f"{name} has no parameter '{key}'{_suggest(key, params)}", arg.loc)
        if key in values:
            raise LsrlError(f"argument '{key}' is given twice", arg.loc)
        values[key] = arg
    missing = [p for p in required if p not in values]
    if missing:
        given = len(args) + len(keywords)
        raise LsrlError(f"wrong number of arguments: {_signature(name, params, required)}, got {given} (missing {', '.join(missing)})", loc)
    return [values[p] if p in values else Arg(defaults[p], loc) for p in params]


def _signature(name: str, params: tuple[str, ...], required: list[str]) -> str:
    if len(required) == len(params):
        count = f"{len(params)} argument{'s' if len(params) != 1 else ''}"
    else:
        count = f"{len(required)} to {len(params)} arguments"
    return f"{name} takes {count} ({', '.join(params)})" if params else f"{name} takes no arguments"


def _callee(call: t.Call) -> str:
    return f"'{call.function.id}'" if isinstance(call.function, t.Name) else "this call"


def _where(loc: Optional[Loc], here: Loc) -> str:
    """A location for a message about ``here``: line:col within the same file, else file:line:col."""
    if loc is None:
        return "a built-in"
    return f"{loc.line}:{loc.col}" if loc.file == here.file else str(loc)


def _suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
