"""The layered model: the machine-independent result of compilation (docs/architecture.md).

A path of layers. Layer 0 reads the model's input, layer i the output of layer i-1, and every layer
begins with an affine map of what it reads, so linear maps never need layers of their own:

- ``affine``: ``y = W x + b``
- ``relu``:   ``y = relu(W x + b)``
- ``gate``:   ``y = (W x + b) * (W2 x + b2)``, elementwise
- ``state``:  ``h_t = A h_{t-1} + W x_t + b`` with ``h_0 = init``; the layer's output is ``h_t``

The last layer's output is the model's output. A new layer kind (a gated state, another
activation) is an entry of :data:`LAYER_KINDS` and a rule in :meth:`LayeredModel.to_graph`.

Every unit has a :class:`UnitLabel`: the program value (source name and index, and the node id
in the graph that was compiled) it holds, or that it carries that value (or the part of it
computed so far) through the layer unchanged. Labels are the ground truth interpretability work
relies on, and the tests check them against the reference interpreter's trace.

The model runs on the reference interpreter: :meth:`LayeredModel.to_graph` spells each layer
as graph nodes (an affine node, then a relu, mul or state node), so the layered model has
exactly the semantics of the IR, in exact and float64 mode.

Serialization: :meth:`LayeredModel.to_json` holds every weight exactly (``"p/q"``, or
``"float(...)"`` for irrational ones); :meth:`LayeredModel.tensors` gives float64 copies for
safetensors, named ``layers.{i}.{attribute}``. Never pickle.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from lsrl.ir import heads
from lsrl.ir.graph import FLOAT_FUNCTIONS, MATRIX, VECTOR, Graph, Label
from lsrl.ir.interpret import run as run_graph
from lsrl.ir.interpret import trace as trace_graph
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO, Number, format_number, parse_number
from lsrl.ir.pointwise import FLOAT_FUNCTION_VALUES
from lsrl.ir.verify import verify as verify_graph

FORMAT = "lsrl.layered"
VERSION = 1

FUNCTIONS = "functions"  # an attribute type: one function name per unit
INTEGERS = "integers"  # an attribute type: positions and sizes (a layer's heads, ir.heads)
IDENTITY = "identity"  # the function of a map layer's unit that carries a value unchanged

LAYER_KINDS: dict[str, dict[str, str]] = {
    "affine": {"W": MATRIX, "b": VECTOR},
    "relu": {"W": MATRIX, "b": VECTOR},
    "gate": {"W": MATRIX, "b": VECTOR, "W2": MATRIX, "b2": VECTOR},
    "state": {"A": MATRIX, "W": MATRIX, "b": VECTOR, "init": VECTOR},
    # f_i((W x + b)_i) per unit, f_i a float function (ir.graph.FLOAT_FUNCTIONS) or the identity
    "map": {"W": MATRIX, "b": VECTOR, "functions": FUNCTIONS},
    # h_t = (W2 x_t + b2) * h_{t-1} + W x_t + b elementwise, from h_0 = init: gated diagonal states
    "gated": {"W": MATRIX, "b": VECTOR, "W2": MATRIX, "b2": VECTOR, "init": VECTOR},
    # W x + b, with heads (ir.heads) filling their units: matrix states S_t = diag(d_t) S_{t-1} +
    # k_t v_t^T and delta-rule states (their reads q_t^T S_t, or the states), and solutions
    # (M + diag(shift))^-1 q by a direct solve (steps 0) or conjugate-gradient steps
    "matrix": {"W": MATRIX, "b": VECTOR, "heads": INTEGERS},
    "delta": {"W": MATRIX, "b": VECTOR, "heads": INTEGERS},
    "solve": {"W": MATRIX, "b": VECTOR, "heads": INTEGERS, "shift": VECTOR, "steps": INTEGERS},
}

# What a unit holds, relative to its source value.
VALUE = "value"  # the value itself, computed by this layer
CARRY = "carry"  # the value (times ``sign``), carried unchanged from an earlier layer
PART = "part"  # the terms of the value (times ``sign``) computed so far; later layers add the rest
ROLES = (VALUE, CARRY, PART)


class LayeredModelError(ValueError):
    """A malformed layered model: a bug in whatever built or loaded it."""


@dataclass(frozen=True)
class UnitLabel:
    """What a unit holds: ``sign`` times the value ``source`` (or its partial sum, per ``role``),
    or with ``rectified`` the ReLU of that: one half of a pair ``relu(v)``, ``relu(-v)`` that
    carries a value of either sign through a ReLU layer.

    ``source`` is the program's name and index for the value; ``node`` and ``unit`` locate it in
    the graph that was compiled (node id and unit of that node), for probes against its trace.
    """

    source: Label
    role: str = VALUE
    sign: int = 1
    rectified: bool = False
    node: int | None = None
    unit: int | None = None

    def __str__(self) -> str:
        value = f"{'-' if self.sign < 0 else ''}{self.source}"
        if self.rectified:
            value = f"relu({value})"
        return {VALUE: value, CARRY: f"carry {value}", PART: f"part of {value}"}[self.role]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.source.name, "index": self.source.index, "role": self.role, "sign": self.sign,
            "rectified": self.rectified, "node": self.node, "unit": self.unit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "UnitLabel":
        source = Label(data["name"], data["index"])
        return cls(source, data["role"], data["sign"], data["rectified"], data["node"], data["unit"])


@dataclass(eq=False)
class Layer:
    kind: str
    attrs: dict[str, Any]
    units: tuple[UnitLabel, ...]

    @property
    def width(self) -> int:
        return len(self.units)

    @property
    def dense_params(self) -> int:
        return sum(m.rows * m.cols if isinstance(m, Matrix) else len(m) for m in self.attrs.values())

    @property
    def nonzeros(self) -> int:
        return sum(m.nnz if isinstance(m, Matrix) else sum(1 for v in m if v != 0) for m in self.attrs.values())


class LayeredModel:
    """Layers, the model's input length and the labels of its input and output units."""

    def __init__(
        self, d_in: int, layers: Sequence[Layer], input_labels: Sequence[Label], output_labels: Sequence[Label]
    ):
        self.d_in = d_in
        self.layers = list(layers)
        self.input_labels = tuple(input_labels)
        self.output_labels = tuple(output_labels)
        self._graph: Graph | None = None
        self._layer_nodes: list[int] = []
        self.verify()

    @property
    def d_out(self) -> int:
        return self.layers[-1].width

    # --- checks and figures -----------------------------------------------------------------
    def verify(self) -> None:
        if not self.layers:
            raise LayeredModelError("a layered model needs at least one layer")
        if len(self.input_labels) != self.d_in or len(self.output_labels) != self.d_out:
            raise LayeredModelError("the model needs one label per input and per output unit")
        width = self.d_in
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.kind})"
            spec = LAYER_KINDS.get(layer.kind)
            if spec is None:
                raise LayeredModelError(f"layer {i} has unknown kind {layer.kind!r}")
            if set(layer.attrs) != set(spec):
                raise LayeredModelError(f"{where} has attributes {sorted(layer.attrs)}, expected {sorted(spec)}")
            for name, kind in spec.items():
                value = layer.attrs[name]
                if kind == MATRIX:
                    cols = layer.width if name == "A" else width
                    if not isinstance(value, Matrix) or value.shape != (layer.width, cols):
                        raise LayeredModelError(f"{where}: {name} should be a {layer.width}x{cols} matrix")
                elif kind == INTEGERS:
                    self._verify_heads(where, layer, name, value)
                elif not isinstance(value, tuple) or len(value) != layer.width:
                    raise LayeredModelError(f"{where}: {name} should be a vector of length {layer.width}")
                elif kind == FUNCTIONS and not all(f == IDENTITY or f in FLOAT_FUNCTIONS for f in value):
                    raise LayeredModelError(f"{where}: {name} holds an unknown function")
            if not all(isinstance(u, UnitLabel) and u.role in ROLES for u in layer.units):
                raise LayeredModelError(f"{where}: every unit needs a label")
            width = layer.width

    @staticmethod
    def _verify_heads(where: str, layer: "Layer", name: str, value: object) -> None:
        if not isinstance(value, tuple) or not all(isinstance(v, int) for v in value):
            raise LayeredModelError(f"{where}: {name} should be a tuple of integers")
        if name != "heads":
            return
        try:
            decoded = heads.decode(layer.kind, value)
        except ValueError as e:
            raise LayeredModelError(f"{where}: {e}") from None
        if any(u >= layer.width or u < 0 for head in decoded for u in head.outputs):
            raise LayeredModelError(f"{where}: a head fills units beyond the layer's {layer.width}")

    def stats(self) -> dict[str, Any]:
        """Size figures (`lsrl stats`, docs/cli.md): layers, state units, widths, parameters."""
        state_layers = [l for l in self.layers if l.kind in ("state", "gated")]
        head_states = sum(heads.state_size(l.kind, l.attrs["heads"]) for l in self.layers if l.kind in heads.STATE_HEADS)
        return {
            "layers": len(self.layers),
            "layer_kinds": dict(Counter(l.kind for l in self.layers)),
            "state_dims": sum(l.width for l in state_layers) + head_states,
            "state_carries": sum(1 for l in state_layers for u in l.units if u.role != VALUE),
            "carry_units": sum(1 for l in self.layers for u in l.units if u.role != VALUE),
            "max_width": max([self.d_in] + [l.width for l in self.layers]),
            "dense_params": sum(l.dense_params for l in self.layers),
            "nonzeros": sum(l.nonzeros for l in self.layers),
        }

    # --- running -----------------------------------------------------------------------------
    def to_graph(self) -> Graph:
        """The model as an IR graph: each layer an affine node then its relu, mul or state node."""
        if self._graph is not None:
            return self._graph
        g = Graph()
        previous = g.add("input", [], self.d_in, name="x", labels=self.input_labels).id
        for i, layer in enumerate(self.layers):
            labels = [Label(str(u), 0) for u in layer.units]
            name, a = f"layer{i}", layer.attrs

            def affine(weight: Matrix, bias: tuple, suffix: str = "") -> int:
                attrs = {"weights": (weight,), "bias": bias}
                return g.add("affine", [previous], layer.width, attrs, f"{name}{suffix}", labels=labels).id

            if layer.kind == "affine":
                previous = affine(a["W"], a["b"])
            elif layer.kind == "relu":
                previous = g.add("relu", [affine(a["W"], a["b"], "/in")], layer.width, name=name, labels=labels).id
            elif layer.kind == "gate":
                factors = [affine(a["W"], a["b"], "/in"), affine(a["W2"], a["b2"], "/in2")]
                previous = g.add("mul", factors, layer.width, name=name, labels=labels).id
            elif layer.kind == "state":
                attrs = {"A": a["A"], "B": (a["W"],), "bias": a["b"], "init": a["init"]}
                previous = g.add("state", [previous], layer.width, attrs, name=name, labels=labels).id
            elif layer.kind == "map":
                previous = map_nodes(g, affine(a["W"], a["b"], "/in"), a["functions"], name, labels)
            elif layer.kind == "gated":
                operands = [affine(a["W2"], a["b2"], "/gate"), affine(a["W"], a["b"], "/in")]
                previous = g.add("gated_state", operands, layer.width, {"init": a["init"]}, name=name, labels=labels).id
            elif layer.kind in heads.HEAD_OF_KIND:
                previous = heads.head_nodes(g, affine(a["W"], a["b"], "/in"), layer.kind, a["heads"], layer.width,
                                            a.get("shift", ()), a.get("steps", (0,))[0], name, labels)
            else:  # pragma: no cover - verify() rejects unknown kinds
                raise AssertionError(layer.kind)
            self._layer_nodes.append(previous)
        g.add_output(previous, "")
        verify_graph(g)
        self._graph = g
        return g

    def run(self, inputs: object, exact: bool = False) -> np.ndarray:
        """Outputs ``[batch, time, d_out]``, with the input conventions of ``ir.interpret.run``."""
        return run_graph(self.to_graph(), inputs, exact=exact)

    def run_float32(self, inputs: object) -> np.ndarray:
        """Outputs ``[time, d_out]`` for one sequence ``[time, d_in]`` with every weight, input and
        intermediate value rounded to float32, as a float32 target computes the layers."""

        def weights(layer: Layer, name: str) -> np.ndarray:  # (the map layer's functions are no weights)
            value = layer.attrs[name]
            dense = value.dense() if isinstance(value, Matrix) else np.array([float(v) for v in value])
            return dense.astype(np.float32)

        x = np.asarray(inputs, dtype=np.float32)
        for layer in self.layers:
            pre = x @ weights(layer, "W").T + weights(layer, "b")
            if layer.kind == "relu":
                x = np.maximum(pre, np.float32(0))
            elif layer.kind == "gate":
                x = pre * (x @ weights(layer, "W2").T + weights(layer, "b2"))
            elif layer.kind == "gated":
                gate, h, steps = x @ weights(layer, "W2").T + weights(layer, "b2"), weights(layer, "init"), []
                for a_t, b_t in zip(gate, pre):
                    h = a_t * h + b_t
                    steps.append(h)
                x = np.stack(steps)
            elif layer.kind == "map":
                x = pre.copy()
                for u, function in enumerate(layer.attrs["functions"]):
                    if function != IDENTITY:
                        with np.errstate(all="ignore"):
                            x[:, u] = FLOAT_FUNCTION_VALUES[function](pre[:, u])
            elif layer.kind == "state":
                transition, h, steps = weights(layer, "A"), weights(layer, "init"), []
                for drive in pre:
                    h = transition @ h + drive
                    steps.append(h)
                x = np.stack(steps)
            elif layer.kind in heads.HEAD_OF_KIND:
                x = heads.fill(layer.kind, layer.attrs, pre[None])[0]
            else:
                x = pre
        return x

    def trace(self, inputs: object, exact: bool = False) -> list[np.ndarray]:
        """Every layer's output ``[batch, time, width]``, in layer order."""
        values = trace_graph(self.to_graph(), inputs, exact=exact)
        return [values[i] for i in self._layer_nodes]

    # --- text --------------------------------------------------------------------------------
    def format(self) -> str:
        s = self.stats()
        lines = [
            f"layered model: input {self.d_in}, output {self.d_out}, {s['layers']} layers, "
            f"max width {s['max_width']}, {s['state_dims']} state units, {s['nonzeros']} non-zero weights"
        ]
        lines.append("  input: " + ", ".join(str(l) for l in self.input_labels))
        lines.append("  (x: the previous layer's units, h: this layer's units at the previous step)")
        width = self.d_in
        for i, layer in enumerate(self.layers):
            lines.append(f"layer {i}: {layer.kind}, {layer.width} unit{'s' if layer.width != 1 else ''} <- {width}")
            lines.extend(f"  h{u:<4} {str(label):<32} = {_unit_text(layer, u)}" for u, label in enumerate(layer.units))
            width = layer.width
        lines.append("  output: " + ", ".join(str(l) for l in self.output_labels))
        return "\n".join(lines)

    __str__ = format

    # --- serialization -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "d_in": self.d_in,
            "input_labels": [[l.name, l.index] for l in self.input_labels],
            "output_labels": [[l.name, l.index] for l in self.output_labels],
            "layers": [
                {
                    "kind": layer.kind,
                    "width": layer.width,
                    "units": [u.to_json() for u in layer.units],
                    "attrs": {k: _attribute_to_json(v) for k, v in layer.attrs.items()},
                }
                for layer in self.layers
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LayeredModel":
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise LayeredModelError(f"not a {FORMAT} version {VERSION} document")
        layers = [
            Layer(
                entry["kind"],
                {k: _attribute_from_json(v, LAYER_KINDS.get(entry["kind"], {}).get(k)) for k, v in entry["attrs"].items()},
                tuple(UnitLabel.from_json(u) for u in entry["units"]),
            )
            for entry in data["layers"]
        ]
        return cls(
            data["d_in"],
            layers,
            [Label(n, i) for n, i in data["input_labels"]],
            [Label(n, i) for n, i in data["output_labels"]],
        )

    def tensors(self) -> dict[str, np.ndarray]:
        """Float64 copies of every weight, ``layers.{i}.{attribute}``, for safetensors (a map
        layer's functions are code, not weights)."""
        out = {}
        for i, layer in enumerate(self.layers):
            for name, value in layer.attrs.items():
                if LAYER_KINDS[layer.kind][name] in (FUNCTIONS, INTEGERS):
                    continue
                array = value.dense() if isinstance(value, Matrix) else np.array([float(v) for v in value])
                out[f"layers.{i}.{name}"] = np.ascontiguousarray(array, dtype=np.float64)
        return out

    def save(self, directory: str | Path) -> None:
        """Write ``layers.json`` (exact) and ``model.safetensors`` (float64) into ``directory``."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "layers.json").write_text(json.dumps(self.to_json()))
        save_file(self.tensors(), str(directory / "model.safetensors"), metadata={"format": FORMAT})

    @classmethod
    def load(cls, directory: str | Path) -> "LayeredModel":
        return cls.from_json(json.loads((Path(directory) / "layers.json").read_text()))


def _attribute_to_json(value: Matrix | tuple) -> Any:
    if isinstance(value, Matrix):
        entries = sorted(value.entries.items())
        return {"shape": [value.rows, value.cols], "entries": [[i, j, format_number(v)] for (i, j), v in entries]}
    return [v if isinstance(v, (str, int)) else format_number(v) for v in value]


def _attribute_from_json(data: Any, kind: str | None) -> Matrix | tuple:
    if isinstance(data, dict):
        rows, cols = data["shape"]
        return Matrix(rows, cols, {(i, j): parse_number(v) for i, j, v in data["entries"]})
    return tuple(data) if kind in (FUNCTIONS, INTEGERS) else tuple(parse_number(v) for v in data)


def map_nodes(g: Graph, pre: int, functions: Sequence[str], name: str = "", labels: Sequence[Label] | None = None) -> int:
    """A map layer as graph nodes: each function applied to the units that have it, the results
    put back in the layer's order."""
    width = len(functions)
    parts, placements = [], []
    for function in dict.fromkeys(functions):
        units = [u for u, f in enumerate(functions) if f == function]
        picked = g.add("affine", [pre], len(units), {"weights": (Matrix.selection(len(units), width, enumerate(units)),),
                                                      "bias": (ZERO,) * len(units)}, f"{name}/{function}").id
        parts.append(picked if function == IDENTITY else g.add(function, [picked], len(units), name=f"{name}/{function}").id)
        placements.append(Matrix.selection(width, len(units), [(u, k) for k, u in enumerate(units)]))
    return g.add("affine", parts, width, {"weights": tuple(placements), "bias": (ZERO,) * width}, name, labels=labels).id


def _combination(terms: Sequence[tuple[str, Number]], bias: Number) -> str:
    """``w1*v1 + w2*v2 + ... + bias`` with unit weights and signs written the usual way."""
    parts = []
    for name, w in terms:
        text = format_number(w)
        parts.append(name if text == "1" else f"-{name}" if text == "-1" else f"{text}*{name}")
    if bias != 0 or not parts:
        parts.append(format_number(bias))
    return " + ".join(parts).replace("+ -", "- ")


def _unit_text(layer: Layer, unit: int) -> str:
    a = layer.attrs

    def reads(matrix: str, bias: str, var: str = "x") -> str:
        return _combination([(f"{var}{j}", w) for j, w in a[matrix].row_items()[unit]], a[bias][unit])

    if layer.kind == "relu":
        return f"relu({reads('W', 'b')})"
    if layer.kind == "gate":
        return f"({reads('W', 'b')}) * ({reads('W2', 'b2')})"
    if layer.kind == "gated":
        return f"({reads('W2', 'b2')}) * h{unit} + {reads('W', 'b')}; init {format_number(a['init'][unit])}"
    if layer.kind == "map":
        function = a["functions"][unit]
        return reads("W", "b") if function == IDENTITY else f"{function}({reads('W', 'b')})"
    if layer.kind in heads.HEAD_OF_KIND:
        for h, head in enumerate(heads.decode(layer.kind, a["heads"])):
            if unit in head.outputs:
                k = unit - head.out
                if layer.kind == "solve":
                    return f"head {h}: z[{k}]"
                return f"head {h}: (q^T S)[{k}]" if head.query != heads.NO_QUERY else f"head {h}: S[{k // head.values}, {k % head.values}]"
    if layer.kind == "state":
        terms = [(f"h{j}", w) for j, w in a["A"].row_items()[unit]]
        terms += [(f"x{j}", w) for j, w in a["W"].row_items()[unit]]
        return f"{_combination(terms, a['b'][unit])}; init {format_number(a['init'][unit])}"
    return reads("W", "b")
