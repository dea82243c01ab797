"""What the mlir target builds its module from (``ModelSpec``): the layered model's kinds, widths,
float64 weights, state-layer plans and the attributes that are not weights, from a layered model
or from a compiled model's config and weights; and its padding to whole vectors of units
(``backends/mlir_module.py`` builds the module).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lsrl.ir import heads
from lsrl.ir.layered import FUNCTIONS, IDENTITY, INTEGERS, LAYER_KINDS, LayeredModel
from lsrl.ir.schedule import COPY, Plan, Stage

STATE_KINDS = ("state", "gated", "delta")  # the layers whose state ``step`` takes and returns
CODE_ATTRIBUTES = (FUNCTIONS, INTEGERS)  # attribute types that are not weights (a map layer's functions, heads)


@dataclass(frozen=True)
class ModelSpec:
    """What the module is built from: the layers' kinds and widths, the float64 weights
    ``layers.{i}.{W,b,...}``, each state layer's plan and the attributes that are not weights (a
    map layer's ``functions``, the ``heads`` of a delta or solve layer, its ``steps``). It comes from
    a layered model, or from a compiled model's config and weights (to build the module for the
    other dtype; ``code_attributes`` is what the config records)."""

    d_in: int
    layers: tuple[tuple[str, int], ...]  # (kind, width)
    tensors: dict[str, np.ndarray]
    plans: dict[int, list[Stage]]
    attributes: dict[int, dict[str, list]]

    @classmethod
    def of_model(cls, model: LayeredModel, plan: Plan) -> "ModelSpec":
        plans = {p.layer: list(p.stages) for p in plan.layers if p.kind == "state"}
        return cls(model.d_in, tuple((layer.kind, layer.width) for layer in model.layers), model.tensors(), plans,
                   code_attributes(model))

    @classmethod
    def of_config(cls, config: dict, tensors: dict[str, np.ndarray]) -> "ModelSpec":
        layers = tuple((layer["kind"], layer["width"]) for layer in config["layers"])
        plans = {int(i): [Stage.from_json(stage) for stage in plan] for i, plan in config["state_plans"].items()}
        attributes = {int(i): attrs for i, attrs in config["code_attributes"].items()}
        return cls(config["d_in"], layers, tensors, plans, attributes)

    @property
    def state_layers(self) -> list[int]:
        """The layers whose state ``step`` takes and returns: linear, gated and delta states."""
        return [i for i, (kind, _) in enumerate(self.layers) if kind in STATE_KINDS]

    def state_width(self, i: int) -> int:
        """The entries of layer ``i``'s state: its units, or a delta layer's heads' states."""
        kind, width = self.layers[i]
        return heads.state_size(kind, self.attributes[i]["heads"]) if kind in heads.STATE_HEADS else width

    def heads(self, i: int) -> list[heads.Head]:
        return heads.decode(self.layers[i][0], self.attributes[i]["heads"])

    def padded(self, multiple: int) -> "ModelSpec":
        """The model with its input and every layer but the last widened to a multiple of
        ``multiple`` units, by units whose weights and initial values are zero: they hold 0 at
        every step (a state layer's are one more stage, a copy of their zero input term; the
        input's are zeros the functions add), and the layers that read them add only exact zeros."""
        widths = [-(-width // multiple) * multiple for width in [self.d_in, *(width for _, width in self.layers[:-1])]]
        widths.append(self.layers[-1][1])
        tensors, plans = {}, {}
        for i, (kind, width) in enumerate(self.layers):
            rows, cols = widths[i + 1], widths[i]
            for name in (name for name, kind_of in LAYER_KINDS[kind].items() if kind_of not in CODE_ATTRIBUTES):
                weight = self.tensors[f"layers.{i}.{name}"]
                shape = (rows, rows) if name == "A" else (rows, cols) if weight.ndim == 2 else (rows,)
                tensors[f"layers.{i}.{name}"] = np.pad(weight, [(0, full - size) for full, size in zip(shape, weight.shape)])
            if kind == "state":
                extra = tuple(range(width, rows))
                plans[i] = self.plans[i] + ([Stage(COPY, extra)] if extra else [])
        attributes = {i: dict(attrs) for i, attrs in self.attributes.items()}
        for i, attrs in attributes.items():
            if "functions" in attrs:  # (the padding units carry their zeros)
                attrs["functions"] = [*attrs["functions"], *[IDENTITY] * (widths[i + 1] - len(attrs["functions"]))]
        layers = tuple((kind, widths[i + 1]) for i, (kind, _) in enumerate(self.layers))
        return ModelSpec(widths[0], layers, tensors, plans, attributes)


def code_attributes(model: LayeredModel) -> dict[int, dict[str, list]]:
    """Per layer that has them (by index), its attributes that are not weights, as JSON lists."""
    attributes = {}
    for i, layer in enumerate(model.layers):
        code = {name: list(value) for name, value in layer.attrs.items() if LAYER_KINDS[layer.kind][name] in CODE_ATTRIBUTES}
        if code:
            attributes[i] = code
    return attributes
