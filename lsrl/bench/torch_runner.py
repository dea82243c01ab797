"""Interventions inside the torch target's own ``model.py`` (docs/bench.md, "Verification").

The generated module computes each layer as one expression of ``F.linear(x, layer.W, ...)`` (and
``layer.W2`` for a gate) of the previous layer's output ``x``, over whole sequences. So the
activations of layer ``i`` are what ``F.linear`` receives with the weights of layer ``i + 1``,
and patching them there is patching them for every reader. ``TorchRunner`` runs the case's files
(``model/model.py`` with ``model/model.safetensors``, in float64) with ``F`` replaced, for the
module, by a stand-in that records or patches those inputs and otherwise is ``torch.nn.functional``.
It has ``LayeredRunner.trace``'s interface, so ``intervene.interchange`` drives both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as functional

from lsrl.backends.codegen import import_generated


class _Functional:
    """``torch.nn.functional`` with ``linear`` watching the inputs of the layers' first maps."""

    def __init__(self, readers: dict[int, int], watch):
        self._readers, self._watch = readers, watch

    def __getattr__(self, name: str):
        return getattr(functional, name)

    def linear(self, x, weight, bias=None):
        layer = self._readers.get(id(weight))
        if layer is not None:
            x = self._watch(layer, x)
        return functional.linear(x, weight, bias)


class TorchRunner:
    def __init__(self, folder: Path, forward: Sequence[np.ndarray], inverse: Sequence[np.ndarray]):
        self.module = import_generated((folder / "model.py").read_text())
        self.net = self.module.load(str(folder), dtype=torch.float64)
        self.forward = [torch.from_numpy(f) for f in forward]
        self.inverse = [torch.from_numpy(g) for g in inverse]
        # the weights that read layer i's output (those of layer i + 1)
        self.readers = {id(getattr(layer, name)): i - 1 for i, layer in enumerate(self.net.layers) if i > 0
                        for name in ("W", "W2") if hasattr(layer, name)}

    def trace(self, inputs: np.ndarray, masks: dict[int, np.ndarray] | None = None,
              source: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """As ``LayeredRunner.trace``, computed by the target's own module."""
        recorded: dict[int, torch.Tensor] = {}
        masks = {i: torch.from_numpy(m)[:, None, :] for i, m in (masks or {}).items()}

        def watch(layer: int, x: torch.Tensor) -> torch.Tensor:
            if layer in masks:
                wanted = torch.from_numpy(source[layer])
                difference = (wanted - x) @ self.inverse[layer].T * masks[layer]
                x = x + difference @ self.forward[layer].T
            recorded.setdefault(layer, x)
            return x

        globals_ = self.module.Model.forward.__globals__
        globals_["F"] = _Functional(self.readers, watch)
        try:
            with torch.no_grad():
                output = self.net(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float64)))
        finally:
            globals_["F"] = functional
        return [recorded[i].numpy() for i in range(len(self.net.layers) - 1)] + [output.numpy()]
