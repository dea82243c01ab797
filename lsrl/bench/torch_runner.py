"""Interventions inside the torch target's own ``model.py`` (docs/bench.md, "Verification").

The generated module's ``forward(x, tap)`` hands each layer's output to ``tap(layer, x)`` and
lets the next layer read what ``tap`` returns, so patching there is patching for every reader.
``TorchRunner`` runs the case's files (``model/model.py`` with ``model/model.safetensors``, in
float64) with a ``tap`` that records or patches the activations. It has ``LayeredRunner.trace``'s
interface, so ``intervene.interchange`` drives both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lsrl.backends.codegen import import_generated


class TorchRunner:
    def __init__(self, folder: Path, forward: Sequence[np.ndarray], inverse: Sequence[np.ndarray]):
        self.module = import_generated((folder / "model.py").read_text())
        self.net = self.module.load(str(folder), dtype=torch.float64)
        self.forward = [torch.from_numpy(f) for f in forward]
        self.inverse = [torch.from_numpy(g) for g in inverse]

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

        with torch.no_grad():
            output = self.net(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float64)), tap=watch)
        return [recorded[i].numpy() for i in range(len(self.net.layers) - 1)] + [output.numpy()]
