"""What the ``torch`` and ``jax`` code generators share: the plan of each state layer, the code of
each layer, the comments that label it, the config and figures, and importing generated source.

Both targets write a self-contained ``model.py`` with the same two interfaces: ``forward`` over a
batch of whole sequences (``[batch, time, d_in] -> [batch, time, d_out]``), layer by layer, and
``step`` for one token at a time with an explicit state. The layer code is written once here,
against a :class:`Syntax` that spells the few things that differ between PyTorch and JAX (how a
weight is named, a matrix product, an index list, joining arrays).

How ``forward`` computes each state layer over whole sequences is the schedule plan
(``ir.schedule.Plan``, made by ``passes.schedule`` and handed over in ``Options.plan``): a
constant state layer's stages (copies, delay lines, running sums and rotations need no loop over
time; loop stages), and the form (recurrent, chunk or scan) of its loop stages and of gated,
matrix and delta layers (docs/schedules.md). ``step`` needs none of this: it applies the
recurrence once per token.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from lsrl.backends import head_code, mesa_code
from lsrl.backends.rounding import stated_rounding
from lsrl.backends.target import Compiled, Options, Target, base_config
from lsrl.ir.heads import STATE_HEADS
from lsrl.ir.layered import IDENTITY, Layer, LayeredModel
from lsrl.ir.schedule import (
    CHUNK,
    COPY,
    LOOPS,
    RECURRENT,
    ROTATION,
    RUNNING_SUM,
    SCALED_LOOP,
    SCAN,
    LayerPlan,
    Plan,
    Stage,
    join_order,
    plural,
    plural_units,
)

LABEL_LIMIT = 110  # characters of unit labels in one comment line before "(+N more)"


# --- the spellings that differ between targets -----------------------------------------------------------
class Syntax(ABC):
    """How one target spells the parts of the layer code. The helper functions that a generated
    file defines itself (:data:`HELPERS`) have the same names and arguments in every target."""

    @abstractmethod
    def bind_layer(self, index: int) -> str:
        """A statement binding ``layer`` to the weights of layer ``index``."""

    def tap(self, index: int) -> str | None:
        """A statement after layer ``index`` that lets the caller of ``forward`` see or replace the
        layer's output ``x`` (interventions); None where ``forward`` offers none."""
        return None

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

    @abstractmethod
    def zeros(self, shape: str) -> str:
        """An array of zeros of ``shape`` (the text of its sizes) and the dtype of ``x``."""

    @abstractmethod
    def reverse(self, array: str) -> str:
        """``array`` with its last axis in reverse order."""

    def gated_lines(self, layer: Layer, plan: LayerPlan) -> list[str]:
        """A gated layer on ``x``: its gate ``a_t``, then the recurrence in the plan's form (a
        target may read the affine maps inside its recurrence instead: ``triton``)."""
        return [f"a = {affine_of(layer, self, 'W2', 'b2')}  # the gate a_t of every step",
                f"x = {_gated_call(plan, affine_of(layer, self), 'a', self.weight('init'))}"]

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
def gather_of(layer: Layer, syntax: Syntax, weight: str = "W", bias: str = "b") -> tuple[list[int], str | None, str | None] | None:
    """``W x + b`` as the columns of ``x`` it picks, the entries that scale them (None: all 1) and
    the bias (None: all 0), where every row of W has at most one non-zero entry (units passed on,
    picked or scaled, as most rows of head and map layers are; an empty row picks column 0 and
    scales it by its 0); None where a row has more (a matrix product)."""
    w, matrix = syntax.weight, layer.attrs[weight]
    rows = matrix.row_items()
    if any(len(row) > 1 for row in rows):
        return None
    columns = [row[0][0] if row else 0 for row in rows]
    scale = None
    if not all(len(row) == 1 and row[0][1] == 1 for row in rows):
        scale = f"{w(weight)}[{syntax.index_list(range(len(rows)))}, {syntax.index_list(columns)}]"
    return columns, scale, w(bias) if any(v != 0 for v in layer.attrs[bias]) else None


def affine_of(layer: Layer, syntax: Syntax, weight: str = "W", bias: str = "b") -> str:
    """``W x + b`` of the layer on ``x``: a matrix product, except where :func:`gather_of` finds
    picked columns: then those columns of x times their entries, the same numbers without the
    product's work."""
    gather = gather_of(layer, syntax, weight, bias)
    if gather is None:
        return syntax.linear("x", syntax.weight(weight), syntax.weight(bias))
    columns, scale, shift = gather
    value = syntax.columns("x", columns, layer.attrs[weight].cols)
    if scale is not None:
        value += f" * {scale}"
    if shift is not None:
        value += f" + {shift}"
    return value


def layer_expression(layer: Layer, syntax: Syntax) -> str:
    """The output of an affine, relu or gate layer on ``x`` (after ``bind_layer``), one expression."""
    first = affine_of(layer, syntax)
    if layer.kind == "affine":
        return first
    if layer.kind == "relu":
        return syntax.relu(first)
    if layer.kind == "gate":
        return f"({first}) * ({affine_of(layer, syntax, 'W2', 'b2')})"
    raise ValueError(f"no single expression for a {layer.kind} layer")


def map_lines(layer: Layer, syntax: Syntax) -> list[str]:
    """A map layer: its pre-activations ``u``, each function on the units that have it, the
    results joined in the layer's order."""
    n = layer.width
    functions = layer.attrs["functions"]
    lines = [f"u = {affine_of(layer, syntax)}"]
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


def forward_lines(model: LayeredModel, plan: Plan, syntax: Syntax) -> list[str]:
    """The body of ``forward``: from ``x`` (``[batch, time, d_in]``) to ``x`` (the output),
    one commented block per layer, each state layer in the form of its plan."""
    lines: list[str] = []
    width = model.d_in
    for i, layer in enumerate(model.layers):
        lines += layer_comment(i, layer, width) + plan_comment(i, layer, plan)
        lines += layer_lines(model, i, plan, syntax)
        tap = syntax.tap(i)
        lines += [tap, ""] if tap else [""]
        width = layer.width
    return lines[:-1]


def plan_comment(index: int, layer: Layer, plan: Plan) -> list[str]:
    """The comment naming the form of a state layer's plan."""
    return [f"# {plan.of(index).describe()}"] if layer.kind in ("state", "gated", "delta") else []


def layer_lines(model: LayeredModel, index: int, plan: Plan, syntax: Syntax) -> list[str]:
    """The code of layer ``index`` in ``forward``: from ``x``, its input, to ``x``, its output."""
    layer = model.layers[index]
    lines = [syntax.bind_layer(index)]
    if layer.kind == "state":
        lines += _state_forward_lines(layer, plan.of(index), syntax)
    elif layer.kind == "map":
        lines += map_lines(layer, syntax)
    elif layer.kind == "gated":
        lines += syntax.gated_lines(layer, plan.of(index))
    elif layer.kind in STATE_HEADS:
        lines += _state_heads_lines(model, plan, index, syntax)
    elif layer.kind == "solve" and mesa_code.solved(model, plan, index):
        lines.append(f"x = {mesa_code.solve_call(model, plan, index, affine_of(layer, syntax), syntax.weight('shift'))}")
    elif layer.kind == "solve":
        lines.append(f"x = {_heads_call(layer, syntax)}")
    else:
        lines.append(f"x = {layer_expression(layer, syntax)}")
    return lines


def _state_heads_lines(model: LayeredModel, plan: Plan, index: int, syntax: Syntax) -> list[str]:
    """A matrix or delta layer in the layer-by-layer ``forward`` (torch's ``forward_tapped``): all its
    heads, those whose states the next layer solves by chunks (``mesa_code``) too, since the tap
    sees every unit (``sourced_forward`` leaves them out)."""
    layer = model.layers[index]
    every = f"x, _ = {head_code.call(layer, affine_of(layer, syntax), None, plan.of(index))}"
    if mesa_code.left_out(model, plan, index):
        return ["# the states of the heads the next layer solves by chunks are formed for the tap", every]
    return [every]


def _gated_call(plan: LayerPlan, driven: str, gate: str, init: str) -> str:
    """``h_t = a_t * h_{t-1} + v_t`` (``a`` may be a constant vector) in the plan's form."""
    if plan.form == CHUNK:
        return f"gated_chunk({driven}, {gate}, {init}, {plan.chunk})"
    if plan.form == SCAN:
        return f"gated_scan({driven}, {gate}, {init})"
    return f"gated_recurrence({driven}, {gate}, {init})"


def _state_forward_lines(layer: Layer, plan: LayerPlan, syntax: Syntax) -> list[str]:
    """Each stage's units as an array ``part{k}``, then the layer's output as their concatenation
    (arrays are built whole rather than written unit by unit: XLA compiles scatters slowly)."""
    w, n, stages = syntax.weight, layer.width, plan.stages
    lines = [f"u = {affine_of(layer, syntax)}  # the input term W x_t + b of every step"]
    if len(stages) == 1:  # (a single stage reads no other)
        lines.append(f"# all units: {stages[0].describe()}")
        return lines + [f"x = {_stage_value(stages[0], plan, 'u', syntax, n)}"]
    where: dict[int, tuple[int, int]] = {}  # unit -> (stage, position in its part)
    for k, stage in enumerate(stages):
        lines.append(f"# {plural_units(stage.units)}: {stage.describe()}")
        driven = syntax.columns("u", stage.units, n)
        if stage.reads:
            earlier, order = _earlier_units(stage.reads, stages, where, syntax)
            previous = f"previous({earlier}, {syntax.entries(w('init'), order, n)})"
            lines.append(f"v = {driven} + {syntax.linear(previous, syntax.submatrix(w('A'), stage.units, order, n))}")
            driven = "v"
        lines.append(f"part{k} = {_stage_value(stage, plan, driven, syntax, n)}")
        where.update((unit, (k, position)) for position, unit in enumerate(stage.units))
    ordered, positions = join_order(stages)
    joined = syntax.concat([f"part{k}" for k in ordered])
    if positions is not None:
        joined += f"[..., {syntax.index(positions)}]"
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


def _stage_value(stage: Stage, plan: LayerPlan, driven: str, syntax: Syntax, width: int) -> str:
    """The stage's units at every step, from their input term ``driven`` (loop stages in the
    plan's form)."""
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
        if plan.form == RECURRENT:
            return f"scaled_recurrence({driven}, {transition}.diagonal(), {init})"
        return _gated_call(plan, driven, f"{transition}.diagonal()", init)
    if plan.form == CHUNK:
        return f"matrix_chunk({driven}, {transition}, {init}, {plan.chunk})"
    if plan.form == SCAN:
        return f"matrix_scan({driven}, {transition}, {init})"
    return f"matrix_recurrence({driven}, {transition}, {init})"


def step_lines(model: LayeredModel, syntax: Syntax) -> list[str]:
    """The body of ``step``: from ``x`` (``[batch, d_in]``) and ``state`` (one ``[batch, width]``
    array per state layer) to ``x`` (the output) and the list ``new_state``."""
    lines = ["new_state = []"]
    state = 0
    for i, layer in enumerate(model.layers):
        lines.append(f"# layer {i}: {layer.kind}, {plural(layer.width, 'unit')}")
        lines.append(syntax.bind_layer(i))
        if layer.kind in STATE_HEADS:
            u = f"({affine_of(layer, syntax)})[:, None]"
            lines.append(f"x, s = {head_code.call(layer, u, f'state[{state}]')}")
            lines += ["x = x[:, 0]", "new_state.append(s)"]
            state += 1
        elif layer.kind == "solve":
            lines.append(f"x = {_heads_call(layer, syntax, step=True)}")
        elif layer.kind in ("state", "gated"):
            w = syntax.weight
            previous = (syntax.linear(f"state[{state}]", w("A")) if layer.kind == "state"
                        else f"({affine_of(layer, syntax, 'W2', 'b2')}) * state[{state}]")
            lines.append(f"x = {previous} + {affine_of(layer, syntax)}")
            lines.append("new_state.append(x)")
            state += 1
        elif layer.kind == "map":
            lines += map_lines(layer, syntax)
        else:
            lines.append(f"x = {layer_expression(layer, syntax)}")
    return lines


HELPERS = (
    "previous", "delay_lines", "running_sum", "rotation", "scaled_recurrence", "gated_recurrence", "heads_layer",
    "matrix_recurrence", "state_heads", "chunks", "associative_scan", "gated_chunk", "gated_scan", "matrix_chunk",
    "matrix_scan", "head_forms", "solve_chunk",
)
# the helpers each helper calls
_HELPER_NEEDS = {
    "gated_chunk": ("chunks",), "matrix_chunk": ("chunks",), "gated_scan": ("associative_scan",),
    "matrix_scan": ("associative_scan",), "head_forms": ("chunks", "associative_scan"),
    "solve_chunk": ("heads_layer", "head_forms", "chunks", "associative_scan"),
}


def _heads_call(layer: Layer, syntax: Syntax, step: bool = False) -> str:
    """A solve layer through the generated ``heads_layer`` helper (in ``step``, one token: a time
    axis of length 1 added and taken away)."""
    w = syntax.weight
    u = affine_of(layer, syntax)
    u = f"({u})[:, None]" if step else u
    extra = f", {w('shift')}, {layer.attrs['steps'][0]}" if layer.kind == "solve" else ""
    call = f"heads_layer({u}, {layer.kind!r}, {list(layer.attrs['heads'])}{extra})"
    return f"{call}[:, 0]" if step else call


def helpers_used(model: LayeredModel, plan: Plan) -> list[str]:
    """The helper functions ``forward`` calls, in the order of :data:`HELPERS`."""
    kinds = {layer.kind for layer in model.layers}
    used = {"heads_layer"} if "solve" in kinds else set()
    if kinds & set(STATE_HEADS):
        used.add("state_heads")
    for layer_plan in plan.layers:
        if layer_plan.kind == "gated":
            used.add(_GATED_HELPER[layer_plan.form])
        if layer_plan.kind in STATE_HEADS and layer_plan.form != RECURRENT:
            used.add("head_forms")
        for stage in layer_plan.stages:
            if stage.method in LOOPS:
                form = _FORM_HELPER[layer_plan.form]
                used.add(form[0] if stage.method == SCALED_LOOP else form[1])
            elif stage.method in _HELPER_OF:
                used.add(_HELPER_OF[stage.method])
            if stage.depth:
                used.add("delay_lines")
            if stage.depth or stage.reads:
                used.add("previous")
    if any(mesa_code.solved(model, plan, i) for i in range(len(model.layers))):
        used.add("solve_chunk")
    used |= {needed for name in used for needed in _HELPER_NEEDS.get(name, ())}
    return [name for name in HELPERS if name in used]


_HELPER_OF = {RUNNING_SUM: "running_sum", ROTATION: "rotation"}  # a copy calls delay_lines only for delay lines
_GATED_HELPER = {RECURRENT: "gated_recurrence", CHUNK: "gated_chunk", SCAN: "gated_scan"}
_FORM_HELPER = {  # the helpers of a constant diagonal and of a constant matrix recurrence in each form
    RECURRENT: ("scaled_recurrence", "matrix_recurrence"), CHUNK: ("gated_chunk", "matrix_chunk"),
    SCAN: ("gated_scan", "matrix_scan"),
}


def state_layer_indices(model: LayeredModel) -> list[int]:
    """The layers that keep a state from token to token (linear, gated, matrix and delta-rule states)."""
    return [i for i, layer in enumerate(model.layers) if layer.kind in ("state", "gated", *STATE_HEADS)]


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


LAYER_KINDS_TEXT = [  # for the header of a generated file
    "Every layer starts with an affine map of the previous layer's output x: affine W x + b,",
    "relu relu(W x + b), gate (W x + b) * (W2 x + b2), map f(W x + b) with a float function f",
    "per unit, state h_t = A h_{t-1} + W x_t + b from h_0 = init, gated h_t = (W2 x_t + b2) *",
    "h_{t-1} + W x_t + b from h_0 = init.",
]


def indent(lines: Sequence[str], spaces: int) -> str:
    """Lines of code as one block indented by ``spaces`` (empty lines stay empty)."""
    return "\n".join((" " * spaces + line) if line else "" for line in lines)


def model_summary(model: LayeredModel, plan: Plan) -> list[str]:
    """Lines for the header of a generated file: what the program reads and writes, its layers."""
    s = figures(model, plan)
    kinds = ", ".join(f"{kind} {count}" for kind, count in s["layer_kinds"].items())
    inputs = summarize_labels([str(label) for label in model.input_labels], 60)
    outputs = summarize_labels([str(label) for label in model.output_labels], 60)
    return [
        f"Reads {plural(model.d_in, 'number')} per step: {inputs}.",
        f"Writes {plural(model.d_out, 'number')} per step: {outputs}.",
        f"{plural(s['layers'], 'layer')} ({kinds}), at most {s['max_width']} units wide, "
        f"{plural(s['state_units'], 'state unit')}, {plural(s['parameters'], 'weight')} "
        f"({s['sequential_loops']} loops over time in forward; schedule {plan.requested}).",
    ]


# --- what both targets build -------------------------------------------------------------------------------
def figures(model: LayeredModel, plan: Plan) -> dict[str, Any]:
    """``lsrl stats --target``: layers, widths, state units, weights and loops over time."""
    stats = model.stats()
    # a matrix or delta layer loops once per group of heads of one shape (backends/head_code.py)
    groups = {p.layer: len(head_code.head_groups(model.layers[p.layer])) for p in plan.layers if p.kind in STATE_HEADS}
    return {
        "layers": stats["layers"],
        "layer_kinds": stats["layer_kinds"],
        "max_width": stats["max_width"],
        "state_units": stats["state_dims"],
        "parameters": stats["dense_params"],
        "sequential_loops": sum(layer_plan.loops * groups.get(layer_plan.layer, 1) for layer_plan in plan.layers),
    }


def code_config(target: Target, model: LayeredModel, options: Options) -> dict[str, Any]:
    """The config of a code target: every target's entries, the schedule plan, each constant state
    layer's stages and the rounding bound of the layered model's arithmetic, which every code
    target computes."""
    plan = options.plan
    if plan is None or [p.layer for p in plan.layers] != state_layer_indices(model):
        raise ValueError(f"the {target.name} target needs the model's schedule plan in Options.plan "
                         "(passes.schedule.schedule(model); lsrl.compile_to fills it in)")
    config = base_config(target, model, options)
    config["schedule"] = plan.to_json()
    config["state_plans"] = {str(p.layer): [s.to_json() for s in p.stages] for p in plan.layers if p.kind == "state"}
    config["error_bound"] = stated_rounding(model, options)
    return config


def build_code_target(
    target: Target, model: LayeredModel, options: Options, generate: Callable[[LayeredModel, Plan], str]
) -> Compiled:
    """The compiled code target: float64 weights ``layers.{i}.{W,b,...}``, ``model.py`` (the text
    ``generate`` writes for the model and its plan), and the config (``code_config``)."""
    config = code_config(target, model, options)
    source = generate(model, options.plan)
    return Compiled(target.name, config, model.tensors(), {"model.py": source}, figures=figures(model, options.plan))


# --- running generated source -------------------------------------------------------------------------------
_GENERATED: dict[str, tuple[ModuleType, tempfile.TemporaryDirectory]] = {}


def import_generated(source: str, beside: dict[str, str] | None = None) -> ModuleType:
    """The generated ``model.py`` imported as a module from a temporary directory (once per source
    text per process; the directory lives as long as the process, so tracebacks show the code),
    with the files ``beside`` it that it loads (the ``triton`` target's ``kernels.py``)."""
    beside = beside or {}
    digest = hashlib.sha256("\0".join([source, *beside.values()]).encode()).hexdigest()[:16]
    if digest not in _GENERATED:
        directory = tempfile.TemporaryDirectory(prefix="lsrl-generated-")
        for name, text in beside.items():
            (Path(directory.name) / name).write_text(text)
        path = Path(directory.name) / "model.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"lsrl_generated_{digest}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _GENERATED[digest] = (module, directory)
    return _GENERATED[digest][0]
