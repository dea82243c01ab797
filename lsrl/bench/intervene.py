"""Interchange interventions (docs/bench.md, "Verification").

For a program value ``v`` (a node of the graph that was compiled) and two inputs, base and source:
the program is run on the base input with ``v`` replaced by its values on the source input (the
reference interpreter, ``ir.interpret.trace`` with ``patches``), and the model is run on the base
input with the units labelled ``v`` replaced by their activations on the source input. In an
obfuscated basis the labelled units are directions: the model's output ``h`` of a layer becomes
``h + F[:, S] (s - (F^-1 h)[S])``, with ``F`` the layer's basis, ``S`` the labelled units that hold
``v`` and ``s`` their values in the source run. The intervention succeeds when both runs give the
same outputs at every step; the interchange-intervention accuracy (IIA) is the fraction that do.

The model is the layered model, run step by step (``LayeredModel.step_trace``) so that a patched
state is what its recurrence continues from; ``torch_runner`` and ``module_runner`` run the same
interventions inside the targets' own files, with the same ``trace`` interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lsrl.bench.domain import Domain
from lsrl.bench.obfuscate import Basis
from lsrl.ir.graph import Graph
from lsrl.ir.interpret import trace as trace_graph
from lsrl.ir.layered import CARRY, FREE, VALUE, LayeredModel
from lsrl.passes.linear_forms import LinearForms

# relative tolerance of the comparison of two float64 runs of one function
TOLERANCE = 1e-6


@dataclass
class Site:
    """Where the model holds program node ``node``: per layer, the labelled units (old basis)."""

    node: int
    units: dict[int, list[int]]


def sites(labelled: LayeredModel, graph: Graph) -> list[Site]:
    """The program values the model holds in units of their own (roles value and carry), in the
    order of their nodes: the atoms of ``graph`` (``passes.linear_forms``; linear values are sums
    of atoms that readers may read term by term) but the input, that no other unit holds a sum
    with, and that no other state of their layer reads through its recurrence (a state that reads
    another of its layer reads it as its previous value plus the terms of its update, not as a
    unit of its own). Those are the values an intervention on labelled units patches entirely."""
    forms = LinearForms(graph)
    found: dict[int, dict[int, list[int]]] = {}
    shared: set[int] = set()  # atoms that some unit holds in a sum with other terms
    for i, layer in enumerate(labelled.layers[:-1]):
        for j, unit in enumerate(layer.units):
            if unit.node is None:
                continue
            terms = forms[unit.node].terms
            if unit.node in terms:  # an atom
                if unit.role in (VALUE, CARRY):
                    found.setdefault(unit.node, {}).setdefault(i, []).append(j)
            else:
                shared.update(a for a, m in terms.items() if m.row_items()[unit.unit])
        if layer.kind == "state":  # (a distractor reads others through its row, but nothing reads it)
            for j, row in enumerate(layer.attrs["A"].row_items()):
                if layer.units[j].role == FREE:
                    continue
                shared.update(layer.units[k].node for k, _ in row if layer.units[k].node != layer.units[j].node)
    return [Site(node, units) for node, units in sorted(found.items())
            if node not in shared and graph.nodes[node].kind != "input"]


def sites_json(found: Sequence[Site], graph: Graph) -> list[dict]:
    return [{"node": s.node, "name": graph.nodes[s.node].name, "units": {str(i): u for i, u in s.units.items()}}
            for s in found]


def sites_from_json(data: Sequence[dict]) -> list[Site]:
    return [Site(d["node"], {int(i): u for i, u in d["units"].items()}) for d in data]


class LayeredRunner:
    """The obfuscated model with its bases, run on float64 sequences with interventions."""

    def __init__(self, model: LayeredModel, forward: Sequence[np.ndarray], inverse: Sequence[np.ndarray]):
        self.model, self.forward, self.inverse = model, forward, inverse

    @classmethod
    def of(cls, model: LayeredModel, bases: Sequence[Basis]) -> "LayeredRunner":
        return cls(model, [b.forward.dense() for b in bases], [b.inverse.dense() for b in bases])

    def trace(self, inputs: np.ndarray, masks: dict[int, np.ndarray] | None = None,
              source: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Every layer's output ``[batch, time, width]`` on ``inputs [batch, time, d_in]``; with
        ``masks`` (layer -> ``[batch, width]``, 1 on the labelled units, in the old basis, to
        patch in each sequence) the masked units take their values in ``source`` (per layer,
        ``[batch, time, width]``)."""

        def patch(i: int, t: int | None, value: np.ndarray) -> np.ndarray:
            if i not in masks:
                return value
            wanted = source[i].swapaxes(0, 1) if t is None else source[i][:, t]
            difference = (wanted - value) @ self.inverse[i].T * masks[i]
            return value + difference @ self.forward[i].T

        outputs = self.model.step_trace(inputs.swapaxes(0, 1), patch=patch if masks else None)
        return [x.swapaxes(0, 1) for x in outputs]


def agree(a: np.ndarray, b: np.ndarray, tolerance: np.ndarray | float = 0.0) -> bool:
    """Whether two runs' outputs ``[..., d_out]`` are the same, up to float64 rounding (relative
    ``TOLERANCE``) and ``tolerance`` (per output: the compiler's stated error bound)."""
    return bool(np.all(np.abs(a - b) <= TOLERANCE * (1 + np.abs(b)) + tolerance))


@dataclass
class Expected:
    """What the program gives with a site patched, per (base, source) pair: its outputs
    (``[pairs, time, d_out]``) and whether the patched run stays in the model's domain."""

    outputs: np.ndarray
    inside: np.ndarray


def expectations(graph: Graph, found: Sequence[Site], inputs: np.ndarray, pairs: Sequence[tuple[int, int]],
                 domain: Domain | None = None) -> list[Expected]:
    """Per site, the program run (the reference interpreter) on each base sequence with the site's
    value taken from the source sequence; computed once for every runner of a case."""
    program = trace_graph(graph, inputs)
    bases, sources = [b for b, _ in pairs], [s for _, s in pairs]
    found_expected = []
    for site in found:
        values = trace_graph(graph, inputs[bases], patches={site.node: program[site.node][sources]})
        found_expected.append(Expected(np.concatenate([values[o.node] for o in graph.outputs], axis=-1),
                                       np.ones(len(pairs), bool) if domain is None else domain.inside(values)))
    return found_expected


def interchange(graph: Graph, runner: LayeredRunner, found: Sequence[Site], inputs: np.ndarray,
                pairs: Sequence[tuple[int, int]], domain: Domain | None = None,
                tolerance: np.ndarray | float = 0.0, expected: Sequence[Expected] | None = None
                ) -> list[list[bool | None]]:
    """Per site, one result per (base, source) pair of sequences of ``inputs [K, time, d_in]``:
    whether the model's outputs agree with the program's (within ``tolerance`` per output, on
    top of the relative ``TOLERANCE``), or None where the patched program leaves ``domain``. The
    model runs every intervention of the case as one batch; ``expected`` (per site, from
    ``expectations``) saves running the program again for another runner."""
    if not found or not pairs:
        return [[] for _ in found]
    if expected is None:
        expected = expectations(graph, found, inputs, pairs, domain)
    bases, sources = [b for b, _ in pairs], [s for _, s in pairs]
    source_trace = runner.trace(inputs)
    batch = len(found) * len(pairs)
    masks: dict[int, np.ndarray] = {}
    for n, site in enumerate(found):
        for i, units in site.units.items():
            mask = masks.setdefault(i, np.zeros((batch, runner.forward[i].shape[0])))
            mask[n * len(pairs):(n + 1) * len(pairs), units] = 1
    tiled = np.concatenate([inputs[bases]] * len(found))
    # (a runner of a target's module has None for a layer it does not hold alone: no site is there)
    sourced = [None if layer is None else layer[sources * len(found)] for layer in source_trace]
    got = runner.trace(tiled, masks, sourced)[-1]
    return [[agree(got[n * len(pairs) + p], expected[n].outputs[p], tolerance) if expected[n].inside[p] else None
             for p in range(len(pairs))] for n in range(len(found))]
