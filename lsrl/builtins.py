"""The names every .lsrl program starts with: ``pi``, the built-in functions and the standard library.

The standard library functions are those of ``lsrl.stdlib`` (one definition for both front ends);
this module only says how each argument is read from the language: a runtime value, a compile-time
number, or either. Parameter names and defaults come from the Python signatures, so the two front
ends cannot drift apart.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from gmpy2 import mpq

from lsrl import compiletime as ct
from lsrl import stdlib
from lsrl.builder import L2NORM_EPS, Value, float_function, l2norm, read, solve
from lsrl.builder import relu as runtime_relu
from lsrl.errors import LsrlError
from lsrl.ir.graph import FLOAT_FUNCTIONS, Loc
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import number
from lsrl.scope import Scope
from lsrl.tensors import load_tensor

if TYPE_CHECKING:
    from lsrl.elaborate import Elaborator


@dataclass(frozen=True)
class Arg:
    """An argument's value and where it was written (the call, for a default)."""

    value: object
    loc: Loc


@dataclass(frozen=True, eq=False)
class Builtin:
    name: str
    params: tuple[str, ...]
    defaults: dict[str, object]
    apply: Callable[["Elaborator", Sequence[Arg]], object]
    variadic: bool = False

    description = "a built-in function"


# --- argument kinds of the standard library ---------------------------------------------------------------
VALUE = "value"  # a runtime vector; a number or compile-time vector becomes a constant
EITHER = "either"  # a runtime vector or a compile-time number or vector, passed on as it is
CONDITION = "condition"  # a runtime vector: choosing by a compile-time value is `A if C else B`
NUMBER = "number"  # a compile-time number
COUNT = "count"  # a compile-time integer

_STDLIB: dict[str, tuple[Callable[..., object], tuple[str, ...]]] = {
    "step": (stdlib.step, (VALUE, NUMBER)),
    "bump": (stdlib.bump, (VALUE, EITHER, EITHER, NUMBER)),
    "larger": (stdlib.larger, (EITHER, EITHER, NUMBER)),
    "smaller": (stdlib.smaller, (EITHER, EITHER, NUMBER)),
    "eq": (stdlib.eq, (EITHER, EITHER, NUMBER)),
    "neq": (stdlib.neq, (EITHER, EITHER, NUMBER)),
    "not": (stdlib.not_, (VALUE,)),
    "and": (stdlib.and_, (VALUE, VALUE, NUMBER)),
    "or": (stdlib.or_, (VALUE, VALUE, NUMBER)),
    "ifelse": (stdlib.ifelse, (CONDITION, EITHER, EITHER, NUMBER)),
    "ifelse_step": (stdlib.ifelse_step, (CONDITION, EITHER, EITHER, NUMBER, NUMBER)),
    "ifelse_mul": (stdlib.ifelse_mul, (CONDITION, EITHER, EITHER)),
    "ifeq": (stdlib.ifeq, (EITHER, EITHER, EITHER, EITHER, NUMBER, NUMBER)),
    "counter": (stdlib.counter, ()),
    "mod_counter": (stdlib.mod_counter, (COUNT,)),
    "accumulate": (stdlib.accumulate, (VALUE,)),
    "delay": (stdlib.delay, (VALUE, COUNT)),
}


def _library_function(name: str, function: Callable[..., object], kinds: tuple[str, ...]) -> Builtin:
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.name != "program"]
    needs_program = len(params) < len(signature.parameters)
    assert len(params) == len(kinds), name
    names = tuple(p.name for p in params)
    defaults = {p.name: number(p.default) for p in params if p.default is not inspect.Parameter.empty}

    def apply(elab: "Elaborator", args: Sequence[Arg]) -> object:
        values = [_read_argument(elab, name, p, kind, arg) for p, kind, arg in zip(names, kinds, args)]
        if EITHER in kinds and not any(isinstance(v, Value) for v in values):
            # "A number used where a runtime value is needed becomes a constant"
            first = kinds.index(EITHER)
            values[first] = elab.program.const(values[first])
        if needs_program:
            return function(elab.program, *values)
        return function(*values)

    return Builtin(name, names, defaults, apply)


def _read_argument(elab: "Elaborator", function: str, param: str, kind: str, arg: Arg) -> object:
    what = f"argument '{param}' of {function}"
    v = arg.value
    if kind == VALUE:
        return elab.runtime(v, what, arg.loc)
    if kind == CONDITION:
        if not ct.is_number(v) and not ct.is_vector(v):
            return elab.runtime(v, what, arg.loc)
        raise LsrlError(
            f"the condition of {function} is known at compile time ({ct.describe(v)}): "
            "choose between compile-time alternatives with `A if COND else B`",
            arg.loc,
        )
    if kind == EITHER:
        if ct.is_number(v) or ct.is_vector(v):
            return ct.to_ir(v)
        return elab.runtime(v, what, arg.loc)
    if kind == NUMBER:
        if ct.is_number(v):
            return ct.to_ir_number(v)
        raise LsrlError(f"{what} must be a compile-time number, got {ct.describe(v)}", arg.loc)
    if kind == COUNT:
        try:
            return ct.as_integer(v, what)
        except LsrlError as e:
            raise LsrlError(e.message, arg.loc) from None
    raise AssertionError(kind)


# --- built-in functions ---------------------------------------------------------------------------------
def _compile_time(arg: Arg, what: str) -> object:
    if isinstance(arg.value, Value) or ct.holds_runtime(arg.value):
        raise LsrlError(f"{what} works on compile-time values, got {ct.describe(arg.value)}", arg.loc)
    return arg.value


def _size(arg: Arg, what: str) -> int:
    try:
        n = ct.as_integer(arg.value, what)
    except LsrlError as e:
        raise LsrlError(e.message, arg.loc) from None
    if n < 1:
        raise LsrlError(f"{what} must be at least 1, got {n}", arg.loc)
    return ct.check_length(n, what)


def _math(name: str) -> Builtin:
    def apply(elab: "Elaborator", args: Sequence[Arg]) -> object:
        (x,) = args
        try:
            return ct.apply_math(name, _compile_time(x, name))
        except LsrlError as e:
            raise LsrlError(e.message, x.loc) from None

    return Builtin(name, ("x",), {}, apply)


def _float_function(name: str) -> Builtin:
    """A float function of ``ir.graph.FLOAT_FUNCTIONS``: a node for a runtime value (float64 only;
    exact mode refuses it at this call), its float value for a compile-time one (``sqrt`` stays
    exact where the root is rational)."""

    def apply(elab: "Elaborator", args: Sequence[Arg]) -> object:
        (x,) = args
        if isinstance(x.value, Value) or ct.holds_runtime(x.value):
            return float_function(name, elab.runtime(x.value, f"the argument of {name}", x.loc))
        try:
            if name in ct.MATH_FUNCTIONS:
                return ct.apply_math(name, _compile_time(x, name))
            return ct.apply_float_function(name, _compile_time(x, name))
        except LsrlError as e:
            raise LsrlError(e.message, x.loc) from None

    return Builtin(name, ("x",), {}, apply)


def _len(elab: "Elaborator", args: Sequence[Arg]) -> object:
    (x,) = args
    v = x.value
    if isinstance(v, Value):
        return mpq(v.dim)
    if isinstance(v, Matrix):
        return mpq(v.rows)
    if type(v) is tuple:
        return mpq(len(v))
    raise LsrlError(f"len needs a vector, a list or a matrix, got {ct.describe(v)}", x.loc)


def _eye(elab: "Elaborator", args: Sequence[Arg]) -> object:
    (n,) = args
    return Matrix.eye(_size(n, "the size of eye"))


def _filled(value: int) -> Callable[["Elaborator", Sequence[Arg]], object]:
    name = "zeros" if value == 0 else "ones"

    def apply(elab: "Elaborator", args: Sequence[Arg]) -> object:
        r, c = args
        rows = _size(r, f"the length of {name}")
        if c.value is None:
            return (mpq(value),) * rows
        cols = _size(c, f"the column count of {name}")
        ct.check_length(rows * cols, f"a {name} matrix")
        return Matrix.zeros(rows, cols) if value == 0 else Matrix.ones(rows, cols)

    return apply


def _diag(elab: "Elaborator", args: Sequence[Arg]) -> object:
    (v,) = args
    if not ct.is_vector(v.value):
        raise LsrlError(f"diag needs a compile-time vector, got {ct.describe(v.value)}", v.loc)
    return Matrix.diag(ct.to_ir(v.value))  # type: ignore[arg-type]


def _relu(elab: "Elaborator", args: Sequence[Arg]) -> object:
    (x,) = args
    if isinstance(x.value, Value) or ct.holds_runtime(x.value):
        return runtime_relu(elab.runtime(x.value, "the argument of relu", x.loc))
    try:
        return ct.relu(x.value)
    except LsrlError as e:
        raise LsrlError(e.message, x.loc) from None


def _sum(elab: "Elaborator", args: Sequence[Arg]) -> object:
    (x,) = args
    v = x.value
    if isinstance(v, Value):
        return v.__rmatmul__(Matrix.ones(1, v.dim))
    if isinstance(v, Matrix):
        v = ct.rows(v)
    if type(v) is not tuple:
        raise LsrlError(f"sum needs a list, a vector or a runtime vector, got {ct.describe(v)}", x.loc)
    if not v:
        return mpq(0)
    total = v[0]
    for item in v[1:]:
        total = elab.binary("+", total, item, x.loc)
    return total


def _concat(elab: "Elaborator", args: Sequence[Arg]) -> object:
    parts = list(args)
    if len(parts) == 1 and type(parts[0].value) is tuple and not ct.is_vector(parts[0].value):
        parts = [Arg(item, parts[0].loc) for item in parts[0].value]  # type: ignore[union-attr]
    if not parts:
        raise LsrlError("concat needs at least one value", args[0].loc if args else None)
    if any(isinstance(p.value, Value) or ct.holds_runtime(p.value) for p in parts):
        return elab.concat(parts)
    try:
        return ct.concat_vectors([p.value for p in parts])
    except LsrlError as e:
        raise LsrlError(e.message, parts[0].loc) from None


def _matrix_state(elab: "Elaborator", args: Sequence[Arg]) -> object:
    """``matrix_state(decay, k, v)``: ``S_t = diag(decay_t) S_{t-1} + k_t v_t^T`` (``Program.matrix_state``)."""
    decay, key, value = args
    runtime = {name: elab.runtime(a.value, f"the {name} of matrix_state", a.loc) for name, a in (("key", key), ("value", value))}
    if isinstance(decay.value, Value) or ct.holds_runtime(decay.value):
        rate = elab.runtime(decay.value, "the decay of matrix_state", decay.loc)
    else:
        rate = _compile_time(decay, "matrix_state")
    try:
        return elab.program.matrix_state(rate, runtime["key"], runtime["value"])
    except LsrlError as e:
        raise LsrlError(e.message, e.loc or decay.loc) from None


def _delta_state(elab: "Elaborator", args: Sequence[Arg]) -> object:
    """``delta_state(alpha, beta, k, v)``: the delta rule (``Program.delta_state``)."""
    alpha, beta, key, value = args
    rates = [
        elab.runtime(a.value, f"the {n} of delta_state", a.loc) if isinstance(a.value, Value) or ct.holds_runtime(a.value)
        else _compile_time(a, "delta_state")
        for n, a in (("alpha", alpha), ("beta", beta))
    ]
    k = elab.runtime(key.value, "the key of delta_state", key.loc)
    v = elab.runtime(value.value, "the value of delta_state", value.loc)
    try:
        return elab.program.delta_state(*rates, k, v)
    except LsrlError as e:
        raise LsrlError(e.message, e.loc or key.loc) from None


def _solve(elab: "Elaborator", args: Sequence[Arg]) -> object:
    """``solve(M, q, shift, steps)``: ``(M + diag(shift))^-1 q`` (``lsrl.builder.solve``)."""
    matrix, query, shift, steps = args
    m = elab.runtime(matrix.value, "the matrix of solve", matrix.loc)
    q = elab.runtime(query.value, "the vector of solve", query.loc)
    count = _compile_time(steps, "solve")
    if not ct.is_number(count) or count != int(count) or count < 0:
        raise LsrlError(f"solve's steps must be a whole number >= 0, got {ct.describe(count)}", steps.loc)
    try:
        return solve(m, q, _compile_time(shift, "solve"), int(count))
    except LsrlError as e:
        raise LsrlError(e.message, matrix.loc) from None


def _read(elab: "Elaborator", args: Sequence[Arg]) -> object:
    """``read(S, q)``: ``S^T q`` of a matrix state (``lsrl.builder.read``)."""
    state, query = args
    s = elab.runtime(state.value, "the state read", state.loc)
    q = elab.runtime(query.value, "the query of read", query.loc)
    try:
        return read(s, q)
    except LsrlError as e:
        raise LsrlError(e.message, query.loc) from None


def _l2norm(elab: "Elaborator", args: Sequence[Arg]) -> object:
    """``l2norm(x, eps)``: ``x / sqrt(sum x_i^2 + eps)`` (``lsrl.builder.l2norm``), float64 only."""
    x, eps = args
    v = elab.runtime(x.value, "the argument of l2norm", x.loc)
    rate = _compile_time(eps, "l2norm")
    if not ct.is_number(rate) or rate < 0:
        raise LsrlError(f"l2norm's eps must be a number >= 0, got {ct.describe(rate)}", eps.loc)
    return l2norm(v, rate)


def _load(elab: "Elaborator", args: Sequence[Arg]) -> object:
    """A tensor of a safetensors file (``lsrl.tensors``), exactly."""
    path, name = args
    for arg, what in ((path, "a file path"), (name, "a tensor name")):
        if not isinstance(arg.value, str):
            raise LsrlError(f"load needs {what} (a string), got {ct.describe(arg.value)}", arg.loc)
    return load_tensor(path.value, name.value, path.loc, name.loc)


def _error(elab: "Elaborator", args: Sequence[Arg]) -> object:
    """A compile-time error of the program's own, e.g. for a parameter value it does not support."""
    (message,) = args
    if not isinstance(message.value, str):
        raise LsrlError(f"error needs a string message, got {ct.describe(message.value)}", message.loc)
    raise LsrlError(message.value)


def prelude() -> Scope:
    """The outermost scope: every file's top level sees these names and may shadow them."""
    scope = Scope(parent=None, barrier=True)
    functions = [
        _math("cos"), _math("sin"),
        *(_float_function(name) for name in FLOAT_FUNCTIONS),
        Builtin("len", ("x",), {}, _len),
        Builtin("eye", ("n",), {}, _eye),
        Builtin("zeros", ("rows", "cols"), {"cols": None}, _filled(0)),
        Builtin("ones", ("rows", "cols"), {"cols": None}, _filled(1)),
        Builtin("diag", ("v",), {}, _diag),
        Builtin("relu", ("x",), {}, _relu),
        Builtin("sum", ("list",), {}, _sum),
        Builtin("concat", ("values",), {}, _concat, variadic=True),
        Builtin("error", ("message",), {}, _error),
        Builtin("load", ("path", "name"), {}, _load),
        Builtin("matrix_state", ("decay", "k", "v"), {}, _matrix_state),
        Builtin("read", ("state", "q"), {}, _read),
        Builtin("l2norm", ("x", "eps"), {"eps": mpq(L2NORM_EPS.numerator, L2NORM_EPS.denominator)}, _l2norm),
        Builtin("delta_state", ("alpha", "beta", "k", "v"), {}, _delta_state),
        Builtin("solve", ("matrix", "q", "shift", "steps"), {"shift": mpq(0), "steps": mpq(0)}, _solve),
    ]
    functions += [_library_function(name, fn, kinds) for name, (fn, kinds) in _STDLIB.items()]
    for f in functions:
        scope.bind(f.name, f, None)
    scope.bind("pi", ct.PI, None)
    return scope
