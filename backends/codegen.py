"""What the ``torch`` and ``jax`` code generators share: the plan of each state layer, the code of
each layer, the comments that label it, the config and figures, and importing generated source.

Both targets write a self-contained ``model.py`` with the same two interfaces: ``forward`` over a
batch of whole sequences (``[batch, time, d_in] -> [batch, time, d_out]``), layer by layer, and
``step`` for one token at a time with an explicit state. The layer code is written once here,
against a :class:`Syntax` that spells the few things that differ between PyTorch and JAX (how a
weight is named, a matrix product, an index list, joining arrays).

How ``forward`` computes a state layer ``h_t = A h_{t-1} + u_t`` (``u = W x + b``, ``h_0 = init``)
without a loop over time where it can (:func:`plan_state_layer`): a unit reads the previous
values of the units in its row of ``A``. The strongly connected groups of that "reads" relation
are computed in dependency order, so a group finds the values of the groups it reads known at
every step, and adds their previous values to its input term. A unit whose row of ``A`` has a zero
diagonal copies its input term (units reading each other that way form delay lines: shift
registers, ``delay``); one whose row is ``e_i`` (counters, accumulators) is a running sum, a
cumulative sum over time; a cycle of units each taking the previous value of the next (the
permutation of ``mod_counter``) is a running sum in the frame that turns with the permutation
(exact: a permutation only moves values). Only what is left (other diagonal entries, other
cycles) loops over time, elementwise where its part of ``A`` is diagonal. ``step`` needs none of
this: it applies ``A`` to the state once per token.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from lsrl.backends.rounding import stated_rounding
from lsrl.backends.target import Compiled, Options, Target, base_config
from lsrl.ir.layered import IDENTITY, Layer, LayeredModel
from lsrl.ir.matrix import Matrix

# How a stage of a state layer is computed (see the module docstring).
COPY = "copy"  # zero diagonal, no cycles: h_t = v_t, or chains of delays (shift registers)
RUNNING_SUM = "running sum"  # rows e_i: h_t = h_{t-1} + v_t, a cumulative sum over time
ROTATION = "rotation"  # cycles of a permutation: a running sum in the frame that turns with it
SCALED_LOOP = "scaled loop"  # a diagonal part of A: a loop over time of elementwise products
MATRIX_LOOP = "matrix loop"  # any other part of A: a loop over time of matrix products
METHODS = (COPY, RUNNING_SUM, ROTATION, SCALED_LOOP, MATRIX_LOOP)  # the order of stages in one phase
LOOPS = (SCALED_LOOP, MATRIX_LOOP)

LABEL_LIMIT = 110  # characters of unit labels in one comment line before "(+N more)"


# --- the spellings that differ between targets -----------------------------------------------------------
class Syntax(ABC):
    """How one target spells the parts of the layer code. The helper functions that a generated
    file defines itself (:data:`HELPERS`) have the same names and arguments in every target."""

    @abstractmethod
    def bind_layer(self, index: int) -> str:
        """A statement binding ``layer`` to the weights of layer ``index``."""

    @abstractmethod
    def weight(self, name: str) -> str:
        """Weight ``name`` (``W``, ``b``, ``A``, ...) of ``layer``."""

    @abstractmethod
    def linear(self, x: str, weight: str, bias: str | None = None) -> str:
        """``x W^T (+ bias)`` over the last axis of ``x``."""

    @abstractmethod
    def relu(self, x: str) -> str:
        """``max(x, 0)`` elementwise."""

    @abstractmethod
    def function(self, name: str, x: str) -> str:
        """A float function of ``ir.graph.FLOAT_FUNCTIONS`` (exp, sigmoid, ...), elementwise."""

    @abstractmethod
    def index_list(self, units: Sequence[int]) -> str:
        """An index that picks the (not contiguous) positions ``units`` of an axis."""

    @abstractmethod
    def concat(self, arrays: Sequence[str]) -> str:
        """The arrays joined along their last axis (one array: itself)."""

    def index(self, units: Sequence[int]) -> str:
        """A slice ``a:b`` where the units are contiguous, else a list of positions."""
        if list(units) == list(range(units[0], units[0] + len(units))):
            return f"{units[0]}:{units[0] + len(units)}"
        return self.index_list(units)

    def columns(self, array: str, units: Sequence[int], width: int) -> str:
        """The units ``units`` of ``array`` (its last axis has ``width``)."""
        return array if list(units) == list(range(width)) else f"{array}[..., {self.index(units)}]"

    def entries(self, vector: str, units: Sequence[int], width: int) -> str:
        """The entries ``units`` of a vector of length ``width``."""
        return vector if list(units) == list(range(width)) else f"{vector}[{self.index(units)}]"

    def submatrix(self, matrix: str, rows: Sequence[int], cols: Sequence[int], width: int) -> str:
        """The rows ``rows`` and columns ``cols`` of a ``width x width`` matrix."""
        if list(rows) == list(cols) == list(range(width)):
            return matrix
        row_index, col_index = self.index(rows), self.index(cols)
        if ":" in row_index and ":" in col_index:
            return f"{matrix}[{row_index}, {col_index}]"
        return f"{matrix}[{row_index}][:, {col_index}]"


# --- the code of each layer ------------------------------------------------------------------------------
def layer_expression(layer: Layer, syntax: Syntax) -> str:
    """The output of an affine, relu or gate layer on ``x`` (after ``bind_layer``), one expression."""
    w = syntax.weight
    first = syntax.linear("x", w("W"), w("b"))
    if layer.kind == "affine":
        return first
    if layer.kind == "relu":
        return syntax.relu(first)
    if layer.kind == "gate":
        return f"{first} * {syntax.linear('x', w('W2'), w('b2'))}"
    raise ValueError(f"no single expression for a {layer.kind} layer")


def map_lines(layer: Layer, syntax: Syntax) -> list[str]:
    """A map layer: its pre-activations ``u``, each function on the units that have it, the
    results joined in the layer's order."""
    w, n = syntax.weight, layer.width
    functions = layer.attrs["functions"]
    lines = [f"u = {syntax.linear('x', w('W'), w('b'))}"]
    groups = {f: [u for u, g in enumerate(functions) if g == f] for f in dict.fromkeys(functions)}
    parts = [
        syntax.columns("u", units, n) if f == IDENTITY else syntax.function(f, syntax.columns("u", units, n))
        for f, units in groups.items()
    ]
    joined = syntax.concat(parts)
    order = [u for units in groups.values() for u in units]
    if order != list(range(n)):
        joined += f"[..., {syntax.index([order.index(i) for i in range(n)])}]"
    return lines + [f"x = {joined}"]


def forward_lines(model: LayeredModel, syntax: Syntax) -> list[str]:
    """The body of ``forward``: from ``x`` (``[batch, time, d_in]``) to ``x`` (the output),
    one commented block per layer."""
    lines: list[str] = []
    width = model.d_in
    for i, layer in enumerate(model.layers):
        lines += layer_comment(i, layer, width)
        lines.append(syntax.bind_layer(i))
        if layer.kind == "state":
            lines += _state_forward_lines(layer, plan_state_layer(layer.attrs["A"]), syntax)
        elif layer.kind == "map":
            lines += map_lines(layer, syntax)
        elif layer.kind == "gated":
            w = syntax.weight
            lines.append(f"a = {syntax.linear('x', w('W2'), w('b2'))}  # the gate a_t of every step")
            lines.append(f"x = gated_recurrence({syntax.linear('x', w('W'), w('b'))}, a, {w('init')})")
        elif layer.kind in ("delta", "solve"):
            lines.append(f"x = {_heads_call(layer, syntax)}")
        else:
            lines.append(f"x = {layer_expression(layer, syntax)}")
        lines.append("")
        width = layer.width
    return lines[:-1]


def _state_forward_lines(layer: Layer, stages: list[Stage], syntax: Syntax) -> list[str]:
    """Each stage's units as an array ``part{k}``, then the layer's output as their concatenation
    (arrays are built whole rather than written unit by unit: XLA compiles scatters slowly)."""
    w, n = syntax.weight, layer.width
    lines = [f"u = {syntax.linear('x', w('W'), w('b'))}  # the input term W x_t + b of every step"]
    if len(stages) == 1:  # (a single stage reads no other)
        lines.append(f"# all units: {describe_stage(stages[0])}")
        return lines + [f"x = {_stage_value(stages[0], 'u', syntax, n)}"]
    where: dict[int, tuple[int, int]] = {}  # unit -> (stage, position in its part)
    for k, stage in enumerate(stages):
        lines.append(f"# {plural_units(stage.units)}: {describe_stage(stage)}")
        driven = syntax.columns("u", stage.units, n)
        if stage.reads:
            earlier, order = _earlier_units(stage.reads, stages, where, syntax)
            previous = f"previous({earlier}, {syntax.entries(w('init'), order, n)})"
            lines.append(f"v = {driven} + {syntax.linear(previous, syntax.submatrix(w('A'), stage.units, order, n))}")
            driven = "v"
        lines.append(f"part{k} = {_stage_value(stage, driven, syntax, n)}")
        where.update((unit, (k, position)) for position, unit in enumerate(stage.units))
    # concatenated in the order of their first units, the parts are usually the units in order
    ordered = sorted(range(len(stages)), key=lambda k: stages[k].units[0])
    joined = syntax.concat([f"part{k}" for k in ordered])
    units = [unit for k in ordered for unit in stages[k].units]
    if units != list(range(n)):
        joined += f"[..., {syntax.index([units.index(i) for i in range(n)])}]"
    return lines + [f"x = {joined}"]


def _earlier_units(
    reads: Sequence[int], stages: list[Stage], where: dict[int, tuple[int, int]], syntax: Syntax
) -> tuple[str, list[int]]:
    """An expression for the units ``reads`` of earlier parts, and the order it holds them in."""
    pieces, order = [], []
    for k in sorted({where[unit][0] for unit in reads}):
        mine = [unit for unit in reads if where[unit][0] == k]
        pieces.append(syntax.columns(f"part{k}", [where[unit][1] for unit in mine], len(stages[k].units)))
        order += mine
    return (pieces[0] if len(pieces) == 1 else syntax.concat(pieces)), order


def _stage_value(stage: Stage, driven: str, syntax: Syntax, width: int) -> str:
    """The stage's units at every step, from their input term ``driven``."""
    w = syntax.weight
    init = syntax.entries(w("init"), stage.units, width)
    if stage.method == COPY:
        if stage.depth == 0:
            return driven
        delays = syntax.submatrix(w("A"), stage.units, stage.units, width)
        return f"delay_lines({driven}, {delays}, {init}, {stage.depth})"
    if stage.method == RUNNING_SUM:
        return f"running_sum({driven}, {init})"
    if stage.method == ROTATION:
        return f"rotation({driven}, {[list(c) for c in stage.cycles]}, {init})"
    transition = syntax.submatrix(w("A"), stage.units, stage.units, width)
    if stage.method == SCALED_LOOP:
        return f"scaled_recurrence({driven}, {transition}.diagonal(), {init})"
    return f"matrix_recurrence({driven}, {transition}, {init})"


def step_lines(model: LayeredModel, syntax: Syntax) -> list[str]:
    """The body of ``step``: from ``x`` (``[batch, d_in]``) and ``state`` (one ``[batch, width]``
    array per state layer) to ``x`` (the output) and the list ``new_state``."""
    lines = ["new_state = []"]
    state = 0
    for i, layer in enumerate(model.layers):
        lines.append(f"# layer {i}: {layer.kind}, {plural(layer.width, 'unit')}")
        lines.append(syntax.bind_layer(i))
        if layer.kind == "delta":
            lines.append(f"x = {_heads_call(layer, syntax, f'state[{state}]', step=True)}")
            lines.append("new_state.append(x)")
            state += 1
        elif layer.kind == "solve":
            lines.append(f"x = {_heads_call(layer, syntax, step=True)}")
        elif layer.kind in ("state", "gated"):
            w = syntax.weight
            previous = (syntax.linear(f"state[{state}]", w("A")) if layer.kind == "state"
                        else f"{syntax.linear('x', w('W2'), w('b2'))} * state[{state}]")
            lines.append(f"x = {previous} + {syntax.linear('x', w('W'), w('b'))}")
            lines.append("new_state.append(x)")
            state += 1
        elif layer.kind == "map":
            lines += map_lines(layer, syntax)
        else:
            lines.append(f"x = {layer_expression(layer, syntax)}")
    return lines


HELPERS = (
    "previous", "delay_lines", "running_sum", "rotation", "scaled_recurrence", "gated_recurrence", "heads_layer",
    "matrix_recurrence",
)


def _heads_call(layer: Layer, syntax: Syntax, state: str | None = None, step: bool = False) -> str:
    """A delta or solve layer through the generated ``heads_layer`` helper (in ``step``, one token:
    a time axis of length 1 added and taken away)."""
    w = syntax.weight
    u = syntax.linear("x", w("W"), w("b"))
    u = f"{u}[:, None]" if step else u
    extra = f", {w('shift')}, {layer.attrs['steps'][0]}" if layer.kind == "solve" else ""
    extra += f", state={state}" if state is not None else ""
    call = f"heads_layer({u}, {layer.kind!r}, {list(layer.attrs['heads'])}{extra})"
    return f"{call}[:, 0]" if step else call


def helpers_used(model: LayeredModel) -> list[str]:
    """The helper functions ``forward`` calls, in the order of :data:`HELPERS`."""
    kinds = {layer.kind for layer in model.layers}
    used = {"gated_recurrence"} if "gated" in kinds else set()
    if kinds & {"delta", "solve"}:
        used.add("heads_layer")
    for i in state_layer_indices(model):
        if model.layers[i].kind != "state":
            continue
        for stage in plan_state_layer(model.layers[i].attrs["A"]):
            if stage.method in _HELPER_OF:
                used.add(_HELPER_OF[stage.method])
            if stage.depth:
                used.add("delay_lines")
            if stage.depth or stage.reads:
                used.add("previous")
    return [name for name in HELPERS if name in used]


_HELPER_OF = {  # the helper each method calls; a copy calls delay_lines only for delay lines
    RUNNING_SUM: "running_sum", ROTATION: "rotation",
    SCALED_LOOP: "scaled_recurrence", MATRIX_LOOP: "matrix_recurrence",
}


def state_layer_indices(model: LayeredModel) -> list[int]:
    """The layers that keep a state from token to token (linear, gated and delta-rule states)."""
    return [i for i, layer in enumerate(model.layers) if layer.kind in ("state", "gated", "delta")]


def layer_table(model: LayeredModel) -> list[tuple[str, int, int]]:
    """(kind, input width, width) of every layer: what the generated code builds its weights from."""
    widths = [model.d_in] + [layer.width for layer in model.layers]
    return [(layer.kind, widths[i], layer.width) for i, layer in enumerate(model.layers)]


# --- comments ---------------------------------------------------------------------------------------------
def layer_comment(index: int, layer: Layer, d_prev: int) -> list[str]:
    title = f"# --- layer {index}: {layer.kind}, {plural(layer.width, 'unit')}, reads {d_prev} "
    lines = [title + "-" * max(3, 96 - len(title))]
    lines.append(f"# {summarize_labels([str(u) for u in layer.units])}")
    if layer.kind == "state":
        lines.append("# h_t = A h_{t-1} + W x_t + b from h_0 = init")
    if layer.kind == "gated":
        lines.append("# h_t = (W2 x_t + b2) * h_{t-1} + W x_t + b from h_0 = init, elementwise")
    return lines


def describe_stage(stage: Stage) -> str:
    """What a stage computes, for the comment above its code (``v``: its input term)."""
    text = {
        COPY: "h_t = v_t (no recurrence)" if not stage.depth else
        f"h_t = N h_{{t-1}} + v_t, N: delay lines, at most {stage.depth} long: "
        f"{plural(stage.depth, 'round')}, no loop",
        RUNNING_SUM: "h_t = h_{t-1} + v_t (rows e_i of A): a cumulative sum, no loop",
        ROTATION: "h_t = P h_{t-1} + v_t (cycles of a permutation P): no loop",
        SCALED_LOOP: "h_t = a * h_{t-1} + v_t (diagonal part of A): a loop over time",
        MATRIX_LOOP: "h_t = A h_{t-1} + v_t: a loop over time",
    }[stage.method]
    if stage.reads:
        return text + f"; v_t = u_t + A h_{{t-1}} on {plural_units(stage.reads)}"
    return text.replace("v_t", "u_t")


def plural_units(units: Sequence[int]) -> str:
    return f"unit{'s' if len(units) > 1 else ''} {unit_ranges(units)}"


def unit_ranges(units: Sequence[int]) -> str:
    """``0-5, 9, 12-18``."""
    parts: list[str] = []
    start = previous = units[0]
    for unit in list(units[1:]) + [None]:
        if unit is not None and unit == previous + 1:
            previous = unit
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if unit is not None:
            start = previous = unit
    return ", ".join(parts)


_INDEXED = re.compile(r"^(?P<base>.*)\[(?P<index>\d+)\]$")


def summarize_labels(labels: Sequence[str], limit: int = LABEL_LIMIT) -> str:
    """Unit labels in one line: runs ``name[0..5]``, repeats ``name x3``, at most ``limit``
    characters then ``(+N more)``."""
    groups: list[list[Any]] = []  # [base, first index or None, last index, repeats]
    for label in labels:
        label = printable(label)
        match = _INDEXED.match(label)
        base, index = (match["base"], int(match["index"])) if match else (label, None)
        last = groups[-1] if groups else None
        if last and last[3] == 1 and index is not None and last[0] == base and last[2] == index - 1:
            last[2] = index
        elif last and last[1] == last[2] and last[0] == base and last[1] == index:
            last[3] += 1
        else:
            groups.append([base, index, index, 1])
    texts, counts = [], []
    for base, first, last, repeats in groups:
        text = base if first is None else f"{base}[{first}]" if first == last else f"{base}[{first}..{last}]"
        texts.append(text + (f" x{repeats}" if repeats > 1 else ""))
        counts.append(repeats if first is None or first == last else last - first + 1)
    shown = 0
    while shown < len(texts) and len(", ".join(texts[: shown + 1])) <= limit:
        shown += 1
    shown = max(shown, 1)
    line = ", ".join(texts[:shown])
    hidden = sum(counts[shown:])
    return line + (f", ... (+{hidden} more)" if hidden else "")


def printable(text: str) -> str:
    """Text safe in a comment: control characters (a newline would end the comment) as spaces."""
    return "".join(c if c.isprintable() else " " for c in text)


def docstring(text: str) -> str:
    """A Python docstring holding ``text`` literally."""
    return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


LAYER_KINDS_TEXT = [  # for the header of a generated file
    "Every layer starts with an affine map of the previous layer's output x: affine W x + b,",
    "relu relu(W x + b), gate (W x + b) * (W2 x + b2), map f(W x + b) with a float function f",
    "per unit, state h_t = A h_{t-1} + W x_t + b from h_0 = init, gated h_t = (W2 x_t + b2) *",
    "h_{t-1} + W x_t + b from h_0 = init.",
]


def indent(lines: Sequence[str], spaces: int) -> str:
    """Lines of code as one block indented by ``spaces`` (empty lines stay empty)."""
    return "\n".join((" " * spaces + line) if line else "" for line in lines)


def model_summary(model: LayeredModel) -> list[str]:
    """Lines for the header of a generated file: what the program reads and writes, its layers."""
    s = figures(model)
    kinds = ", ".join(f"{kind} {count}" for kind, count in s["layer_kinds"].items())
    inputs = summarize_labels([str(label) for label in model.input_labels], 60)
    outputs = summarize_labels([str(label) for label in model.output_labels], 60)
    return [
        f"Reads {plural(model.d_in, 'number')} per step: {inputs}.",
        f"Writes {plural(model.d_out, 'number')} per step: {outputs}.",
        f"{plural(s['layers'], 'layer')} ({kinds}), at most {s['max_width']} units wide, "
        f"{plural(s['state_units'], 'state unit')}, {plural(s['parameters'], 'weight')} "
        f"({s['sequential_loops']} loops over time in forward).",
    ]


# --- what both targets build -------------------------------------------------------------------------------
def figures(model: LayeredModel) -> dict[str, Any]:
    """``lsrl stats --target``: layers, widths, state units, weights and loops over time."""
    stats = model.stats()
    plans = [plan_state_layer(layer.attrs["A"]) for layer in model.layers if layer.kind == "state"]
    gated = sum(1 for layer in model.layers if layer.kind == "gated")
    return {
        "layers": stats["layers"],
        "layer_kinds": stats["layer_kinds"],
        "max_width": stats["max_width"],
        "state_units": stats["state_dims"],
        "parameters": stats["dense_params"],
        "sequential_loops": gated + sum(1 for plan in plans for stage in plan if stage.method in LOOPS),
    }


def build_code_target(target: Target, model: LayeredModel, options: Options, source: str) -> Compiled:
    """The compiled code target: float64 weights ``layers.{i}.{W,b,...}``, ``model.py``, and the
    config with each state layer's plan."""
    config = base_config(target, model, options)
    config["state_plans"] = {
        str(i): [
            {"method": s.method, "units": list(s.units), "reads": list(s.reads), "depth": s.depth,
             "cycles": [list(c) for c in s.cycles]}
            for s in plan_state_layer(model.layers[i].attrs["A"])
        ]
        for i in state_layer_indices(model) if model.layers[i].kind == "state"
    }
    config["error_bound"] = stated_rounding(model, options)
    return Compiled(target.name, config, model.tensors(), {"model.py": source}, figures=figures(model))


# --- running generated source -------------------------------------------------------------------------------
_GENERATED: dict[str, tuple[ModuleType, tempfile.TemporaryDirectory]] = {}


def import_generated(source: str) -> ModuleType:
    """The generated ``model.py`` imported as a module from a temporary directory (once per source
    text per process; the directory lives as long as the process, so tracebacks show the code)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    if digest not in _GENERATED:
        directory = tempfile.TemporaryDirectory(prefix="lsrl-generated-")
        path = Path(directory.name) / "model.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"lsrl_generated_{digest}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _GENERATED[digest] = (module, directory)
    return _GENERATED[digest][0]
