"""Interventions inside the stock modules of the ``rnn``, ``lstm``, ``gru``, ``mamba`` and ``hawk``
targets (docs/bench.md, "Verification").

These targets' files are stock modules (``torch.nn.RNN``, ``LSTM``, ``GRU`` with an ``nn.Linear``
readout) or the mixer blocks the backends define, loaded from the case's ``model/`` with its
weights, in float64. ``ModuleRunner`` runs the module one stage at a time: each layer of the
stacked cell as a one-layer module of the same class with that layer's weights, each mamba
mixer, each hawk recurrent and MLP block. Between two stages it reads the hidden layers of the
layered model that the stage's output holds (``module.json``: ``values = M s + offset`` on the
stage's output ``s``), patches them as ``LayeredRunner`` does, and moves the stage's output along
``pinv(M)`` by the change, so that the next stage (which reads the layer only through ``M s``) sees
the patched values. A stage is run over the whole sequence, so a patched value reaches its
readers at every step, while the stage's own recurrence continues from its unpatched state: for
the values that are sites (``intervene.sites``: no other value of their layer reads them through
the recurrence) the readers see the same as in the layered model's step-by-step run.

``trace`` has ``LayeredRunner.trace``'s interface, so ``intervene.interchange`` drives it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lsrl.bench.truth import MODULE_FILE, MODULE_FORMAT

STOCK_CELLS = ("rnn", "lstm", "gru")


def _stages(target: str, folder: Path) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The module's stages in order, each a function of the previous stage's output (the first of
    the inputs); the last one's output is the model's."""
    from lsrl.backends.target import Compiled

    compiled = Compiled.read(folder)
    config, tensors = compiled.config, {k: torch.from_numpy(v) for k, v in compiled.tensors.items()}
    if target in STOCK_CELLS:
        arguments = config[target]
        cell = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[target]
        extra = {"nonlinearity": arguments["nonlinearity"]} if target == "rnn" else {}
        stages = []
        for k in range(arguments["num_layers"]):
            size = arguments["input_size"] if k == 0 else arguments["hidden_size"]
            layer = cell(size, arguments["hidden_size"], 1, batch_first=True, **extra).double()
            layer.load_state_dict({f"{name}_l0": tensors[f"{target}.{name}_l{k}"]
                                   for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
            stages.append(lambda x, layer=layer: layer(x)[0])
        readout = torch.nn.Linear(**config["readout"]).double()
        readout.load_state_dict({"weight": tensors["readout.weight"], "bias": tensors["readout.bias"]})
        return stages + [readout]
    from lsrl.backends import get_target

    stack = get_target(target).stack_class.from_compiled(config, compiled.tensors, torch.float64)
    blocks = [block for layer in stack.layers for block in layer.values()]  # (mamba: mixer; hawk: temporal, mlp)
    first = blocks[0]
    blocks[0] = lambda x: first(torch.nn.functional.pad(x, (0, stack.d_model - stack.d_in)))
    last = blocks[-1]
    blocks[-1] = lambda x: last(x)[..., : stack.d_out]
    return blocks


class ModuleRunner:
    """The case's module run stage by stage, with the interventions of ``LayeredRunner``."""

    def __init__(self, folder: Path, target: str, forward: Sequence[np.ndarray], inverse: Sequence[np.ndarray]):
        data = json.loads((folder / MODULE_FILE).read_text())
        if data.get("format") != MODULE_FORMAT:
            raise ValueError(f"{folder / MODULE_FILE} is not a {MODULE_FORMAT} file")
        self.stages = _stages(target, folder / "model")
        self.forward, self.inverse = forward, inverse
        self.held: dict[int, list[int]] = {}  # stage -> the layers read from its output
        self.reads: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # layer -> M, offset, pinv(M)
        for i, layer in enumerate(data["layers"]):
            if layer is None:
                continue
            matrix = np.zeros((len(layer["rows"]), layer["width"]))
            for r, row in enumerate(layer["rows"]):
                for j, v in row:
                    matrix[r, j] = v
            self.held.setdefault(layer["stage"], []).append(i)
            self.reads[i] = (matrix, np.array(layer["offset"]), np.linalg.pinv(matrix))

    def holds(self, layer: int) -> bool:
        """Whether the module holds the layered model's layer ``layer`` in a stage's output."""
        return layer in self.reads

    def trace(self, inputs: np.ndarray, masks: dict[int, np.ndarray] | None = None,
              source: Sequence[np.ndarray] | None = None) -> list[np.ndarray | None]:
        """As ``LayeredRunner.trace`` (a layer the module does not hold alone is None)."""
        masks = masks or {}
        if any(i not in self.reads for i in masks):
            raise ValueError("an intervention on a layer the module does not hold alone")
        recorded: dict[int, np.ndarray] = {}
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float64))
        torch.set_flush_denormal(True)  # as the targets' run: subnormal silu/gelu tails slow the CPU
        try:
            with torch.no_grad():
                for k, stage in enumerate(self.stages):
                    x = stage(x)
                    for i in self.held.get(k, ()):
                        x = self._read(i, x, masks.get(i), source[i] if i in masks else None, recorded)
        finally:
            torch.set_flush_denormal(False)
        layers = len(self.forward)
        return [recorded.get(i) for i in range(layers - 1)] + [x.numpy()]

    def _read(self, i: int, x: torch.Tensor, mask: np.ndarray | None, wanted: np.ndarray | None,
              recorded: dict[int, np.ndarray]) -> torch.Tensor:
        matrix, offset, back = self.reads[i]
        width = matrix.shape[1]
        held = x[..., :width].numpy()
        values = held @ matrix.T + offset
        if mask is not None:
            difference = (wanted - values) @ self.inverse[i].T * mask[:, None, :]
            patched = values + difference @ self.forward[i].T
            x = x.clone()
            x[..., :width] = torch.from_numpy(held + (patched - values) @ back.T)
            values = patched
        recorded[i] = values
        return x
