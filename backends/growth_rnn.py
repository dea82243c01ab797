"""Growth of ``rnn``, ``lstm`` and ``gru`` models (docs/growth.md): ``hidden_size`` for all three,
``num_layers`` for ``rnn``.

Hidden size: each layer gets new cells; their rows of ``weight_ih``, ``weight_hh`` and both biases
(in every gate) are free, while the old cells' gates read the new cells (in ``weight_hh`` and in
the next layer's ``weight_ih``) with 0 and the readout reads them with 0. An old cell's gates are
then functions of old cells only, so every old cell, and the readout, computes what it did.

Layers (``rnn`` only): a new top layer, read by the readout in place of the old top layer. The
old top layer's cells are ReLUs, so non-negative: a cell the readout reads becomes
``relu(1 * x_j + 0)`` with a zero row of ``weight_hh``, which is ``x_j``. The other cells of the new
layer are read by nothing: all their weights are free. An LSTM or GRU cell passes its output
through ``tanh``, so no cell of theirs is the identity: their depth does not grow.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import numpy as np
from lsrl.backends.growth import free, grown_rows, grown_vector, zero_columns
from lsrl.backends.target import Compiled
from lsrl.ir.errors import LsrlError
from lsrl.ir.free_weights import Initializer

SIZES = ("hidden_size", "num_layers")
GATE_COUNT = {"rnn": 1, "lstm": 4, "gru": 3}
FREE = "free"


def sizes(config: Mapping[str, Any]) -> dict[str, int]:
    module = config[config["target"]]
    return {"hidden_size": module["hidden_size"], "num_layers": module["num_layers"]}


def grow(compiled: Compiled, sizes_wanted: Mapping[str, int], rng: np.random.Generator,
         init: Initializer, at: int) -> Compiled:
    name, config = compiled.target, copy.deepcopy(compiled.config)
    gates, now = GATE_COUNT[name], sizes(config)
    hidden, layers = now["hidden_size"], now["num_layers"]
    new_hidden, new_layers = sizes_wanted["hidden_size"], sizes_wanted["num_layers"]
    if new_layers > layers and name != "rnn":
        raise LsrlError(f"an {name} layer passes its output through tanh, so no new {name} layer computes the "
                        "identity: grow its hidden_size only (the rnn target grows in both)")
    if new_layers > layers and at != layers:
        raise LsrlError(f"the {name} target inserts layers on top only (before layer {layers})")
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
    for k in range(layers, new_layers):
        tensors.update(_identity_layer(k, tensors["readout.weight"], rng, init))
        read = set(np.flatnonzero(np.any(tensors["readout.weight"] != 0, axis=0)))
        units.append([f"copy of {units[-1][j]}" if j in read else FREE for j in range(new_hidden)])
    config[name].update({"hidden_size": new_hidden, "num_layers": new_layers})
    config["readout"]["in_features"] = new_hidden
    config[f"{name}_units"] = units
    figures = {"layers": new_layers, "hidden_size": new_hidden, "parameters": int(sum(t.size for t in tensors.values()))}
    return Compiled(name, config, tensors, dict(compiled.files), figures=figures)


def _identity_layer(k: int, readout: np.ndarray, rng: np.random.Generator, init: Initializer) -> dict[str, np.ndarray]:
    """An Elman layer copying the cells the readout reads (proof: the module docstring)."""
    hidden = readout.shape[1]
    weight_ih, weight_hh = free(init, rng, (hidden, hidden)), free(init, rng, (hidden, hidden))
    bias_ih, bias_hh = free(init, rng, (hidden,)), free(init, rng, (hidden,))
    for j in np.flatnonzero(np.any(readout != 0, axis=0)):
        weight_ih[j], weight_hh[j], bias_ih[j], bias_hh[j] = 0, 0, 0, 0
        weight_ih[j, j] = 1
    return {f"rnn.weight_ih_l{k}": weight_ih, f"rnn.weight_hh_l{k}": weight_hh,
            f"rnn.bias_ih_l{k}": bias_ih, f"rnn.bias_hh_l{k}": bias_hh}
