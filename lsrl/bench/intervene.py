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
state is what its recurrence continues from; its weights are the torch target's, tensor for
tensor, and every other target computes its outputs (checked on the case's data by ``verify``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from lsrl.bench.obfuscate import Basis
from lsrl.ir.graph import Graph
from lsrl.ir.interpret import trace as trace_graph
from lsrl.ir.layered import CARRY, VALUE, LayeredModel, UnitLabel
from lsrl.passes.linear_forms import LinearForms

# relative tolerance of the comparison of two float64 runs of one function
TOLERANCE = 1e-6


@dataclass
class Site:
    """Where the model holds program node ``node``: per layer, the labelled units (old basis)."""

    node: int
    units: dict[int, list[int]]


def sites(labelled: Sequence[Sequence[UnitLabel]], graph: Graph) -> list[Site]:
    """The program values the model holds in units of their own (roles value and carry), in the
    order of their nodes: the atoms of ``graph`` (``passes.linear_forms``; linear values are sums
    of atoms that readers may read term by term) but the input, that no other unit holds a sum
    with. Those are the values an intervention on labelled units patches entirely."""
    forms = LinearForms(graph)
    found: dict[int, dict[int, list[int]]] = {}
    shared: set[int] = set()  # atoms that some unit holds in a sum with other terms
    for i, units in enumerate(labelled[:-1]):
        for j, unit in enumerate(units):
            if unit.node is None:
                continue
            terms = forms[unit.node].terms
            if unit.node in terms:  # an atom
                if unit.role in (VALUE, CARRY):
                    found.setdefault(unit.node, {}).setdefault(i, []).append(j)
            else:
                shared.update(a for a, m in terms.items() if m.row_items()[unit.unit])
    return [Site(node, units) for node, units in sorted(found.items())
            if node not in shared and graph.nodes[node].kind != "input"]


class LayeredRunner:
    """The obfuscated model with its bases, run on float64 sequences with interventions."""

    def __init__(self, model: LayeredModel, forward: Sequence[np.ndarray], inverse: Sequence[np.ndarray]):
        self.model, self.forward, self.inverse = model, forward, inverse

    @classmethod
    def of(cls, model: LayeredModel, bases: Sequence[Basis]) -> "LayeredRunner":
        return cls(model, [b.forward.dense() for b in bases], [b.inverse.dense() for b in bases])

    def trace(self, sequence: np.ndarray, site: Site | None = None, source: list[np.ndarray] | None = None):
        """Every layer's output ``[time, width]`` on one sequence; with ``site`` and the source
        run's trace, the site's units take their source values."""
        if site is None:
            return self.model.step_trace(sequence)

        def patch(i: int, t: int | None, value: np.ndarray) -> np.ndarray:
            units = site.units.get(i)
            if not units:
                return value
            wanted = source[i] if t is None else source[i][t]
            old = value @ self.inverse[i].T
            delta = (wanted @ self.inverse[i].T)[..., units] - old[..., units]
            return value + delta @ self.forward[i][:, units].T

        return self.model.step_trace(sequence, patch=patch)


def program_outputs(graph: Graph, inputs: np.ndarray, patches: dict | None = None) -> np.ndarray:
    values = trace_graph(graph, inputs, patches=patches)
    return np.concatenate([values[o.node] for o in graph.outputs], axis=-1)


def agree(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(np.abs(a - b) <= TOLERANCE * (1 + np.abs(b))))


def interchange(graph: Graph, runner: LayeredRunner, site: Site, inputs: np.ndarray, pairs) -> list[bool]:
    """One result per (base, source) pair of sequences of ``inputs [K, time, d_in]``."""
    program = trace_graph(graph, inputs)
    results = []
    for base, source in pairs:
        patches = {site.node: program[site.node][source:source + 1]}
        expected = program_outputs(graph, inputs[base:base + 1], patches)[0]
        got = runner.trace(inputs[base], site, runner.trace(inputs[source]))[-1]
        results.append(agree(got, expected))
    return results
