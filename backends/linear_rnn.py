"""The ``linear-rnn`` target: linear recurrent layers with ReLU MLPs between them (LSRL's native form).

The model is a stack of blocks and a readout. A block is a linear recurrence over its input

    h_t = A h_{t-1} + B x_t + b,    h_0 = init

followed by an MLP: Linear layers each followed by a ReLU. The layered model, stacked into ReLU
and state layers and an affine readout (``backends.stacking``), is cut into blocks at its state
layers: each state layer starts a block and the ReLU layers after it (up to the next state layer)
are the block's MLP. A model that begins with ReLU layers gets a first block without a
recurrence; consecutive state layers give blocks with empty MLPs. Every weight is the layered
model's own, so the target is exact (float64 agrees with the exact interpreter up to rounding)
for sequences up to ``--max-len`` steps (the rebuilt gates of ``passes.degate`` may rely on
bounds over that length).

``lsrl compile --target linear-rnn`` writes ``model.py`` (the PyTorch modules and a loader,
needing only torch and safetensors), ``model.safetensors`` (``blocks.{i}.recurrence.{A,B,b,init}``,
``blocks.{i}.mlp.{j}.{weight,bias}``, ``readout.{weight,bias}``) and ``config.json``, whose
``model`` entry holds the constructor arguments. ``run`` imports that same ``model.py``.
"""

from __future__ import annotations

import numpy as np
from lsrl.backends.codegen import import_generated
from lsrl.backends.rounding import stated_rounding
from lsrl.backends.stacking import dense, stack
from lsrl.backends.target import Compiled, Options, Target, base_config
from lsrl.ir.layered import Layer, LayeredModel

MODEL_SOURCE = '''\
"""A linear RNN with ReLU MLPs between its recurrences, compiled by lsrl; needs torch and safetensors.

    model = load("DIR")              # DIR holds config.json and model.safetensors
    outputs = model(inputs)          # [batch, time, input_size] -> [batch, time, output_size]

Each block is a linear recurrence h_t = A h_{t-1} + B x_t + b (h_0 = init) over the block's input,
then an MLP of Linear layers each followed by a ReLU; a block may have no recurrence. A Linear
readout maps the last block's output to the outputs.
"""

import json
from pathlib import Path

import torch
from torch import nn


class LinearRecurrence(nn.Module):
    """h_t = A h_{t-1} + B x_t + b over the time axis (dimension 1), from h_0 = init."""

    def __init__(self, input_size, state_size):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(state_size, state_size))
        self.B = nn.Parameter(torch.zeros(state_size, input_size))
        self.b = nn.Parameter(torch.zeros(state_size))
        self.init = nn.Parameter(torch.zeros(state_size))

    def forward(self, x):
        drive = x @ self.B.T + self.b
        h = self.init.expand(x.shape[0], -1)
        states = []
        for t in range(x.shape[1]):
            h = h @ self.A.T + drive[:, t]
            states.append(h)
        return torch.stack(states, dim=1)


class Block(nn.Module):
    """An optional linear recurrence, then Linear+ReLU layers of the given sizes."""

    def __init__(self, input_size, state_size, mlp_sizes):
        super().__init__()
        self.recurrence = LinearRecurrence(input_size, state_size) if state_size is not None else None
        sizes = [input_size if state_size is None else state_size, *mlp_sizes]
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.output_size = sizes[-1]

    def forward(self, x):
        if self.recurrence is not None:
            x = self.recurrence(x)
        for layer in self.mlp:
            x = torch.relu(layer(x))
        return x


class LinearRNN(nn.Module):
    """Blocks (each a dict: state_size, or None for no recurrence, and mlp_sizes), then a readout."""

    def __init__(self, input_size, blocks, output_size):
        super().__init__()
        self.blocks = nn.ModuleList()
        size = input_size
        for spec in blocks:
            self.blocks.append(Block(size, spec["state_size"], spec["mlp_sizes"]))
            size = self.blocks[-1].output_size
        self.readout = nn.Linear(size, output_size)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.readout(x)


def load(directory, dtype=torch.float32):
    """The model of DIR/config.json with the weights of DIR/model.safetensors, in dtype."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    model = LinearRNN(**config["model"]).to(dtype)
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model
'''


def blocks(stacked: LayeredModel) -> list[tuple[Layer | None, list[Layer]]]:
    """The stacked model's layers before the readout, cut into (state layer or None, ReLU layers)."""
    out: list[tuple[Layer | None, list[Layer]]] = []
    for layer in stacked.layers[:-1]:
        if layer.kind == "state":
            out.append((layer, []))
        elif not out:
            out.append((None, [layer]))
        else:
            out[-1][1].append(layer)
    return out


class LinearRNNTarget(Target):
    name = "linear-rnn"
    description = "linear recurrent layers with ReLU MLPs between them, in PyTorch (exact)"
    native_gates = False
    bounded_length = True

    def build(self, model: LayeredModel, options: Options) -> Compiled:
        stacked = stack(model, self.name)
        tensors: dict[str, np.ndarray] = {}
        specs = []
        cut = blocks(stacked)
        for i, (state, mlp) in enumerate(cut):
            if state is not None:
                for name in ("A", "init", "b"):
                    tensors[f"blocks.{i}.recurrence.{name}"] = dense(state.attrs[name])
                tensors[f"blocks.{i}.recurrence.B"] = dense(state.attrs["W"])
            for j, layer in enumerate(mlp):
                tensors[f"blocks.{i}.mlp.{j}.weight"] = dense(layer.attrs["W"])
                tensors[f"blocks.{i}.mlp.{j}.bias"] = dense(layer.attrs["b"])
            state_size = state.width if state is not None else None
            specs.append({"state_size": state_size, "mlp_sizes": [layer.width for layer in mlp]})
        readout = stacked.layers[-1]
        tensors["readout.weight"] = dense(readout.attrs["W"])
        tensors["readout.bias"] = dense(readout.attrs["b"])
        config = base_config(self, model, options)
        config["model"] = {"input_size": model.d_in, "blocks": specs, "output_size": model.d_out}
        config["error_bound"] = stated_rounding(stacked, options)
        config["block_units"] = [
            {
                "recurrence": [str(u) for u in state.units] if state is not None else None,
                "mlp": [[str(u) for u in layer.units] for layer in mlp],
            }
            for state, mlp in cut
        ]
        hidden = stacked.layers[:-1]
        figures = {
            "layers": len(hidden),
            "blocks": len(specs),
            "hidden_size": max(layer.width for layer in hidden),  # the widest layer
            "state_units": sum(layer.width for layer in hidden if layer.kind == "state"),
            "parameters": sum(t.size for t in tensors.values()),
        }
        return Compiled(self.name, config, tensors, {"model.py": MODEL_SOURCE}, figures=figures)

    def run(self, compiled: Compiled, inputs: np.ndarray, dtype: str) -> np.ndarray:
        import torch

        module = import_generated(compiled.files["model.py"])
        torch_dtype = getattr(torch, dtype)
        model = module.LinearRNN(**compiled.config["model"]).to(torch_dtype)
        model.load_state_dict({name: torch.as_tensor(value) for name, value in compiled.tensors.items()})
        with torch.no_grad():
            return model(torch.from_numpy(inputs).to(torch_dtype)).double().numpy()


TARGETS = {"linear-rnn": LinearRNNTarget()}
