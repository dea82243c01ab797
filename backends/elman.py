"""The ``rnn`` target: one stock ``torch.nn.RNN(nonlinearity="relu")`` and an ``nn.Linear`` readout.

An Elman layer computes ``h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` from ``h_0 = 0``, where
``x_t`` is the previous layer's output at the same step. The layered model, stacked into ReLU and
state layers and an affine readout (``backends.stacking``), becomes one such layer per layer:

- a ReLU layer ``relu(W x + b)`` is an Elman layer with ``W_hh = 0``;
- a state layer ``h_t = A h_{t-1} + W x_t + b`` (``h_0 = init``) is held, as in the LSRL paper, by
  its positive and negative parts ``p = relu(z)``, ``n = relu(-z)``, so that ``z = p - n``. The
  Elman layer starts from 0, so it holds ``z = h - init``, which follows
  ``z_t = A z_{t-1} + W x_t + b + (A - I) init`` from ``z_0 = 0``::

      W_ih = [W; -W],   b_ih = [c; -c] with c = b + (A - I) init,   W_hh = [[A, -A], [-A, A]]

  and whatever reads the layer reads ``h = p - n + init`` (its input weights absorb the map:
  ``backends.stacking.Decoding``).
- the affine readout reads the last layer the same way and is the ``nn.Linear``.

All layers are padded with unused units to the widest one, so that the whole model is a single
``nn.RNN(input_size, hidden_size, num_layers)``; ``b_hh`` is zero. Weights are composed exactly
and rounded once, to float64. The model is exact (float64 agrees with the exact interpreter up to
rounding) for every sequence up to ``--max-len`` steps: the rebuilt gates (``passes.degate``) may
rely on the bounds of counters and accumulators over that length.

``model.safetensors`` holds the ``state_dict`` of ``nn.ModuleDict({"rnn": ..., "readout": ...})``
(``rnn.weight_ih_l0``, ..., ``readout.bias``) and ``config.json`` the constructor arguments
(``rnn``, ``readout``), so the stock modules load the weights directly (docs/target-rnn.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from lsrl.backends.rounding import stated_rounding
from lsrl.backends.stacking import Decoding, block_matrix, padded, stack
from lsrl.backends.target import Compiled, LayerReading, Options, Target, base_config
from lsrl.ir.layered import Layer, LayeredModel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, add

UNUSED = "unused"  # the label of a padding unit


@dataclass(frozen=True)
class ElmanLayer:
    """One layer of the stock module, before padding: ``relu(W_ih x + bias + W_hh h_prev)``."""

    weight_ih: Matrix
    bias: tuple[Number, ...]
    weight_hh: Matrix
    units: tuple[str, ...]


def elman_layers(model: LayeredModel, target: str) -> tuple[list[ElmanLayer], Matrix, tuple[Number, ...]]:
    """The Elman layers computing ``model``, and the readout's weight and bias."""
    stacked = stack(model, target)
    decoding = Decoding.identity(stacked.d_in)
    layers = []
    for layer in stacked.layers[:-1]:
        weight, bias = decoding.read(layer.attrs["W"], layer.attrs["b"])
        if layer.kind == "relu":
            layers.append(ElmanLayer(weight, bias, Matrix.zeros(layer.width, layer.width), tuple(map(str, layer.units))))
            decoding = Decoding.identity(layer.width)
        else:
            layers.append(_split_state(layer, weight, bias))
            decoding = _pairs(layer.width, layer.attrs["init"])
    readout = stacked.layers[-1]
    weight, bias = decoding.read(readout.attrs["W"], readout.attrs["b"])
    return layers, weight, bias


def _pairs(width: int, offset: tuple[Number, ...]) -> Decoding:
    """Values held as positive parts (the first ``width`` units) and negative parts, plus ``offset``."""
    eye = Matrix.eye(width)
    return Decoding(block_matrix([[eye, eye.scaled(-ONE)]]), tuple(offset))


def layer_readings(model: LayeredModel) -> list[LayerReading]:
    """Where each hidden layer of ``model`` is in the stock module: Elman layer i holds layer i
    (``stack`` keeps the layers in order), a ReLU layer as its units, a state layer as the parts
    of ``h - init``, an affine layer as the parts of its values (``stacking``)."""
    readings = []
    for i, layer in enumerate(model.layers[:-1]):
        if layer.kind == "relu":
            decoding = Decoding.identity(layer.width)
        else:
            decoding = _pairs(layer.width, layer.attrs["init"] if layer.kind == "state" else (ZERO,) * layer.width)
        readings.append(LayerReading(i, decoding.matrix, decoding.offset))
    return readings


def arithmetic_model(model: LayeredModel, target: str) -> LayeredModel:
    """The layered model whose sums the Elman layers compute, for the rounding analysis: each
    state layer holds ``h - init`` from 0 (bias ``b + (A - I) init``) and the layer reading it adds
    ``W init`` to its bias (the module docstring)."""
    stacked = stack(model, target)
    layers, held = [], None  # held: the init the previous state layer leaves out
    for layer in stacked.layers:
        attrs = dict(layer.attrs)
        if held is not None:
            attrs["b"] = tuple(add(b, v) for b, v in zip(attrs["b"], attrs["W"].apply(held)))
        held = None
        if layer.kind == "state":
            held = attrs["init"]
            drift = (add(a, -i) for a, i in zip(attrs["A"].apply(held), held))
            attrs["b"] = tuple(add(b, d) for b, d in zip(attrs["b"], drift))
            attrs["init"] = tuple(ZERO for _ in held)
        layers.append(Layer(layer.kind, attrs, layer.units))
    return LayeredModel(stacked.d_in, layers, stacked.input_labels, stacked.output_labels)


def _split_state(layer: Layer, weight: Matrix, bias: tuple[Number, ...]) -> ElmanLayer:
    """The state layer held as the positive and negative parts of ``h - init`` (module docstring)."""
    transition, init = layer.attrs["A"], layer.attrs["init"]
    drift = [add(a, -i) for a, i in zip(transition.apply(init), init)]  # (A - I) init
    c = tuple(add(b, d) for b, d in zip(bias, drift))
    minus = transition.scaled(-ONE)
    shifted = [_minus_init(str(u), v) for u, v in zip(layer.units, init)]
    return ElmanLayer(
        weight_ih=block_matrix([[weight], [weight.scaled(-ONE)]]),
        bias=c + tuple(-v for v in c),
        weight_hh=block_matrix([[transition, minus], [minus, transition]]),
        units=tuple(f"relu({v})" for v in shifted) + tuple(f"relu(-({v}))" for v in shifted),
    )


def _minus_init(value: str, init: Number) -> str:
    if init == 0:
        return value
    return f"{value} + {-init}" if init < 0 else f"{value} - {init}"


class ElmanTarget(Target):
    name = "rnn"
    description = "a stock torch.nn.RNN(nonlinearity='relu') with an nn.Linear readout (exact)"
    native_gates = False
    bounded_length = True

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        layers, readout_weight, readout_bias = elman_layers(model, self.name)
        hidden = max(len(layer.units) for layer in layers)
        tensors: dict[str, np.ndarray] = {}
        for k, layer in enumerate(layers):
            tensors[f"rnn.weight_ih_l{k}"] = padded(layer.weight_ih, hidden, model.d_in if k == 0 else hidden)
            tensors[f"rnn.weight_hh_l{k}"] = padded(layer.weight_hh, hidden, hidden)
            tensors[f"rnn.bias_ih_l{k}"] = padded(layer.bias, hidden)
            tensors[f"rnn.bias_hh_l{k}"] = np.zeros(hidden)
        tensors["readout.weight"] = padded(readout_weight, model.d_out, hidden)
        tensors["readout.bias"] = padded(readout_bias, model.d_out)
        config = base_config(self, model, options)
        config["rnn"] = {
            "input_size": model.d_in, "hidden_size": hidden, "num_layers": len(layers),
            "nonlinearity": "relu", "bias": True, "batch_first": True,
        }
        config["readout"] = {"in_features": hidden, "out_features": model.d_out, "bias": True}
        config["rnn_units"] = [list(layer.units) + [UNUSED] * (hidden - len(layer.units)) for layer in layers]
        figures = {
            "layers": len(layers),
            "hidden_size": hidden,
            "parameters": sum(t.size for t in tensors.values()),
            "used_units": sum(len(layer.units) for layer in layers),
        }
        # the Elman layers read each state unit as its two parts: twice the terms of each sum
        config["error_bound"] = stated_rounding(arithmetic_model(model, self.name), options, term_factor=2)
        return Compiled(self.name, config, tensors, figures=figures, readings=layer_readings(model))

    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        import torch

        modules = stock_modules(compiled.config, compiled.tensors, dtype)
        with torch.no_grad():
            hidden, _ = modules["rnn"](torch.from_numpy(inputs).to(getattr(torch, dtype)))
            return modules["readout"](hidden).double().numpy()


def stock_modules(config: Mapping[str, Any], tensors: Mapping[str, Any], dtype: str = "float32"):
    """``nn.ModuleDict({"rnn": nn.RNN(...), "readout": nn.Linear(...)})`` built from the config's
    constructor arguments, with the weights loaded (numpy arrays or tensors, by state_dict name)."""
    import torch

    torch_dtype = getattr(torch, dtype)
    modules = torch.nn.ModuleDict(
        {"rnn": torch.nn.RNN(**config["rnn"]), "readout": torch.nn.Linear(**config["readout"])}
    ).to(torch_dtype)
    modules.load_state_dict({name: torch.as_tensor(value) for name, value in tensors.items()})
    return modules


TARGETS = {"rnn": ElmanTarget()}
