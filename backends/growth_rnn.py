"""Growth of ``rnn``, ``lstm`` and ``gru`` models (docs/growth.md): ``hidden_size`` and
``num_layers`` (layers inserted at any position), in both variants of ``lstm``/``gru``.

Hidden size: each layer gets new cells; their rows of ``weight_ih``, ``weight_hh`` and both biases
(in every gate) are free, while the old cells' gates read the new cells (in ``weight_hh`` and in
the next layer's ``weight_ih``) with 0 and the readout reads them with 0. An old cell's gates are
then functions of old cells only, so every old cell, and the readout, computes what it did.

Layers: a layer inserted before layer K copies the values that layer K's old cells read (the
readout's, on top), each into a copy cell whose other weights are 0, and layer K (or the readout)
reads the copies through ``R``, the map from the copy cells back to the values (``W' = W R``):

- ``rnn``, and the ``relu`` variants: a copy cell is ``relu(sign x_j)``. The cells of an Elman
  layer and of a ReLU LSTM (``o relu(c)``, ``o = relu(.)``) are non-negative, so one cell copies
  one, as does a first layer over inputs the model states are non-negative; otherwise (a ReLU GRU,
  whose update gate may mix in any value, or signed inputs) a value is copied as the pair
  ``relu(x_j)``, ``relu(-x_j)``, read as their difference. Exact as real numbers.
- ``stock`` ``lstm``/``gru``: the construction's own hold cell, with saturated gates (an LSTM's
  input and output gates open and its forget gate shut, a GRU's update gate shut and reset gate
  open, at ``+-1024``) and the candidate ``tanh(s x_j)``, read back as ``h / s``. The construction
  keeps every cell within ``|h| <= 2**-28`` (a first layer's inputs are scaled into it, ``s`` a
  power of two), where ``tanh(h)`` rounds to ``h`` in float32 and float64, so the copy is exact in
  both. As real numbers no stock cell computes the identity (docs/growth.md proves it): the copy
  is off by at most ``(2/3) |h|**2`` of the value, ``2**-56.6`` relative.

Other cells of the new layer are read by nothing, and all their weights are free. Layers above
the first new one copy it cell for cell.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from typing import Any, Mapping

import numpy as np
from lsrl.backends.gated_rnn import RELU, SATURATION, SIGNAL_EXPONENT
from lsrl.backends.growth import free, grown_rows, grown_vector, zero_columns
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

SIZES = ("hidden_size", "num_layers")
GATE_COUNT = {"rnn": 1, "lstm": 4, "gru": 3}
GATES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
FREE = "free"
ON, OFF = float(SATURATION), -float(SATURATION)


def sizes(config: Mapping[str, Any]) -> dict[str, int]:
    module = config[config["target"]]
    return {"hidden_size": module["hidden_size"], "num_layers": module["num_layers"]}


def grow(compiled: Compiled, sizes_wanted: Mapping[str, int], rng: np.random.Generator,
         init: Initializer, at: int) -> Compiled:
    name, config = compiled.target, copy.deepcopy(compiled.config)
    gates, now = GATE_COUNT[name], sizes(config)
    hidden, layers = now["hidden_size"], now["num_layers"]
    new_hidden, new_layers = sizes_wanted["hidden_size"], sizes_wanted["num_layers"]
    tensors = dict(compiled.tensors)
    for k in range(layers):
        reads = config[name]["input_size"] if k == 0 else new_hidden
        for kind, cols in (("ih", reads), ("hh", new_hidden)):
            tensors[f"{name}.weight_{kind}_l{k}"] = grown_rows(tensors[f"{name}.weight_{kind}_l{k}"], gates, hidden,
                                                               new_hidden, cols, rng, init)
            tensors[f"{name}.bias_{kind}_l{k}"] = grown_vector(tensors[f"{name}.bias_{kind}_l{k}"], gates, hidden,
                                                               new_hidden, rng, init)
    tensors["readout.weight"] = zero_columns(tensors["readout.weight"], new_hidden)
    units = [list(layer) + [FREE] * (new_hidden - hidden) for layer in config[f"{name}_units"]]
    if new_layers > layers:
        copier = _Copier(name, config, tensors, hidden, new_hidden, at, layers, rng, init)
        inserted, source_labels = copier.built(tensors, new_layers - layers), (
            [label["name"] for label in config["input_labels"]] if at == 0 else units[at - 1])
        tensors = _renumbered(tensors, name, layers, at, inserted)
        units[at:at] = [copier.labels(source_labels)] * (new_layers - layers)
    config[name].update({"hidden_size": new_hidden, "num_layers": new_layers})
    config["readout"]["in_features"] = new_hidden
    config[f"{name}_units"] = units
    figures = {"layers": new_layers, "hidden_size": new_hidden, "parameters": int(sum(t.size for t in tensors.values()))}
    return Compiled(name, config, tensors, dict(compiled.files), figures=figures)


class _Copier:
    """The copy cells of layers inserted before layer ``at``: cell ``c`` holds ``sign * scale``
    times the value ``source`` of the layer below (``copies``: (cell, source, sign, scale))."""

    def __init__(self, name: str, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray], hidden: int,
                 new_hidden: int, at: int, layers: int, rng: np.random.Generator, init: Initializer):
        self.name, self.hidden, self.new_hidden, self.at, self.layers = name, hidden, new_hidden, at, layers
        self.rng, self.init = rng, init
        self.stock = name != "rnn" and config["variant"] != RELU
        low, high = (abs(Fraction(v)) for v in config["error_bound"]["input_range"])
        signed_input = Fraction(config["error_bound"]["input_range"][0]) < 0
        # the values below are non-negative: an Elman or ReLU LSTM layer's cells, or inputs stated so
        one_sign = (not signed_input) if at == 0 else name in ("rnn", "lstm")
        scale = 2.0 ** (SIGNAL_EXPONENT - math.frexp(float(max(low, high, 1)))[1]) if self.stock and at == 0 else 1.0
        self.width = config[name]["input_size"] if at == 0 else new_hidden
        self.copies = []
        for j in self._read(tensors):
            for sign in (1.0,) if self.stock or one_sign else (1.0, -1.0):
                self.copies.append((len(self.copies), j, sign, scale))
        if len(self.copies) > new_hidden:
            raise LsrlError(f"a new {name} layer copies {len(self.copies)} values into cells of their own"
                            f"{'' if one_sign or self.stock else ' (a pair each: relu(v), relu(-v))'}: it needs "
                            f"hidden_size >= {len(self.copies)} (asked for {new_hidden})")

    def _read(self, tensors: Mapping[str, np.ndarray]) -> list[int]:
        """The values layer ``at``'s old cells read (the readout's, on top)."""
        if self.at == self.layers:
            return [int(j) for j in np.flatnonzero(np.any(tensors["readout.weight"][:, : self.hidden] != 0, axis=0))]
        weight, old_width = tensors[f"{self.name}.weight_ih_l{self.at}"], self.width if self.at == 0 else self.hidden
        rows = np.concatenate([weight[g * self.new_hidden : g * self.new_hidden + self.hidden, :old_width]
                               for g in range(GATE_COUNT[self.name])])
        return [int(j) for j in np.flatnonzero(np.any(rows != 0, axis=0))]

    def built(self, tensors: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
        """``count`` layers (bottom first); the reader above them reads the copies through ``R``."""
        back = np.zeros((self.width, self.new_hidden))  # R: values = R @ cells
        for cell, source, sign, scale in self.copies:
            back[source, cell] = sign / scale
        reader = "readout.weight" if self.at == self.layers else f"{self.name}.weight_ih_l{self.at}"
        tensors[reader] = self._read_through(tensors[reader], back, reader != "readout.weight")
        above = [(cell, cell, 1.0, 1.0) for cell, _, _, _ in self.copies]  # copies of non-negative or small cells
        return [self._layer(self.copies if k == 0 else above, self.width if k == 0 else self.new_hidden)
                for k in range(count)]

    def _read_through(self, weight: np.ndarray, back: np.ndarray, free_new_rows: bool) -> np.ndarray:
        out = weight[:, : back.shape[0]] @ back
        if free_new_rows:  # the next layer's new cells: free over the new layer's cells
            gates = GATE_COUNT[self.name]
            for g in range(gates):
                rows = slice(g * self.new_hidden + self.hidden, (g + 1) * self.new_hidden)
                out[rows] = free(self.init, self.rng, out[rows].shape)
        return out

    def _layer(self, copies: list[tuple[int, int, float, float]], width: int) -> dict[str, np.ndarray]:
        gates, hidden = GATES[self.name], self.new_hidden
        weight_ih, weight_hh = free(self.init, self.rng, (len(gates) * hidden, width)), \
            free(self.init, self.rng, (len(gates) * hidden, hidden))
        bias_ih, bias_hh = free(self.init, self.rng, (len(gates) * hidden,)), free(self.init, self.rng, (len(gates) * hidden,))
        constant = {"i": ON, "f": OFF, "o": ON, "r": ON, "z": OFF} if self.stock else {"i": 1.0, "o": 1.0, "r": 1.0}
        value_gate = {"rnn": "h", "lstm": "g", "gru": "n"}[self.name]
        for cell, source, sign, scale in copies:
            for g, gate in enumerate(gates):
                row = g * hidden + cell
                weight_ih[row], weight_hh[row], bias_ih[row], bias_hh[row] = 0, 0, 0, constant.get(gate, 0.0)
                if gate == value_gate:
                    weight_ih[row, source] = sign * scale
        prefix = f"{self.name}."
        return {prefix + "weight_ih": weight_ih, prefix + "weight_hh": weight_hh, prefix + "bias_ih": bias_ih,
                prefix + "bias_hh": bias_hh}

    def labels(self, below: list[str]) -> list[str]:
        out = [FREE] * self.new_hidden
        for cell, source, sign, _ in self.copies:
            out[cell] = f"copy of {'' if sign > 0 else '-'}{below[source]}"
        return out


def _renumbered(tensors: dict[str, np.ndarray], name: str, layers: int, at: int,
                inserted: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The layer tensors with ``inserted`` before layer ``at`` (names ``{name}.weight_ih_l{k}``)."""
    out = {k: v for k, v in tensors.items() if not k.startswith(f"{name}.")}
    stack = [{kind: tensors[f"{name}.{kind}_l{k}"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
             for k in range(layers)]
    stack[at:at] = [{kind.split(".", 1)[1]: v for kind, v in layer.items()} for layer in inserted]
    for k, layer in enumerate(stack):
        out.update({f"{name}.{kind}_l{k}": v for kind, v in layer.items()})
    return out
