"""The schedule pass: the plan (``ir.schedule.Plan``) of how every state layer of a layered model
computes its recurrence over a whole sequence, in the form asked for (docs/schedules.md).

A constant state layer ``h_t = A h_{t-1} + u_t`` (``h_0 = init``) is split into stages first
(:func:`plan_state_layer`): a unit reads the previous values of the units in its row of ``A``.
The strongly connected groups of that "reads" relation are computed in dependency order, so a
group finds the values of the groups it reads known at every step, and adds their previous values
to its input term. A unit whose row of ``A`` has a zero diagonal copies its input term (units
reading each other that way form delay lines: shift registers, ``delay``); one whose row is
``e_i`` (counters, accumulators) is a running sum, a cumulative sum over time; a cycle of units
each taking the previous value of the next (the permutation of ``mod_counter``) is a running sum
in the frame that turns with the permutation (exact: a permutation only moves values). What is
left (other diagonal entries, other cycles) is a loop stage, computed in the layer's form:
elementwise where its part of ``A`` is diagonal.

``auto`` picks the form per layer from the sequence length: the chunked form from the crossover
length given for the layer's kind (the driver passes the target's, measured by
``benchmarks/schedules.py``: docs/schedules.md), the recurrent form below it or where none is given.
"""

from __future__ import annotations

from typing import Mapping

from lsrl.ir.layered import LayeredModel
from lsrl.ir.matrix import Matrix
from lsrl.ir.schedule import (
    AUTO,
    CHUNK,
    COPY,
    DEFAULT_CHUNK,
    FORMS,
    LOOPS,
    MATRIX_LOOP,
    METHODS,
    RECURRENT,
    ROTATION,
    RUNNING_SUM,
    SCALED_LOOP,
    SCHEDULED_KINDS,
    SCHEDULES,
    LayerPlan,
    Plan,
    Stage,
)

Crossovers = Mapping[str, int]  # layer kind -> the shortest sequence from which ``auto`` chunks it


def schedule(model: LayeredModel, requested: str = RECURRENT, chunk: int = DEFAULT_CHUNK, length: int = 0,
             crossovers: Crossovers | None = None) -> Plan:
    """The plan of every state layer of ``model`` in the form ``requested`` (``auto``: per layer,
    the chunked form where the sequence ``length`` reaches the ``crossovers`` length of its kind)."""
    if requested not in SCHEDULES:
        raise ValueError(f"unknown schedule {requested!r}; the schedules are {', '.join(SCHEDULES)}")
    if chunk < 1:
        raise ValueError(f"the chunk size must be at least 1, got {chunk}")
    layers = []
    for i, layer in enumerate(model.layers):
        if layer.kind not in SCHEDULED_KINDS:
            continue
        stages = tuple(plan_state_layer(layer.attrs["A"])) if layer.kind == "state" else ()
        form = _auto_form(layer.kind, length, crossovers or {}) if requested == AUTO else requested
        if layer.kind == "state" and not any(s.method in LOOPS for s in stages):
            form = RECURRENT  # nothing loops: the stages are already parallel over time
        layers.append(LayerPlan(i, layer.kind, form, chunk if form == CHUNK else 0, stages))
    return Plan(requested, tuple(layers), length if requested == AUTO else 0)


def _auto_form(kind: str, length: int, crossovers: Crossovers) -> str:
    return CHUNK if kind in crossovers and length >= crossovers[kind] else RECURRENT


__all__ = ["FORMS", "SCHEDULES", "Crossovers", "plan_state_layer", "schedule"]


def plan_state_layer(transition: Matrix) -> list[Stage]:
    """The stages that compute a state layer with transition ``A``, in an order where every stage
    reads only units of its own (see ``Stage.depth``) or of the stages before it."""
    n = transition.rows
    rows = [dict(items) for items in transition.row_items()]
    reads = [{j for j in rows[i] if j != i} for i in range(n)]
    groups = _strongly_connected_groups(reads)
    group_of = {unit: g for g, group in enumerate(groups) for unit in group}
    methods = [_group_method(group, rows, reads) for group in groups]

    # phase: 0 for a group that reads no other group, else after the phases of the groups it reads,
    # except that copies reading copies share a phase: a delay line is one stage, whose ``depth``
    # is its longest chain of links. Groups are listed dependencies first, so what they read is known.
    phases: list[int] = []
    links: list[int] = []
    for g, group in enumerate(groups):
        below = {group_of[j] for i in group for j in reads[i]} - {g}
        chained = [d for d in below if methods[g] == methods[d] == COPY]
        phases.append(max([phases[d] for d in chained] + [phases[d] + 1 for d in below - set(chained)], default=0))
        links.append(max((links[d] + 1 for d in chained if phases[d] == phases[g]), default=0))

    by_stage: dict[tuple[int, str], list[int]] = {}
    for g, (method, phase) in enumerate(zip(methods, phases)):
        by_stage.setdefault((phase, MATRIX_LOOP if method in LOOPS else method), []).append(g)

    stages = []
    for (phase, method), members in sorted(by_stage.items(), key=lambda item: (item[0][0], METHODS.index(item[0][1]))):
        units = tuple(sorted(u for g in members for u in groups[g]))
        if method in LOOPS:
            # one loop for every looping group of the phase; elementwise when all are single units
            method = SCALED_LOOP if all(len(groups[g]) == 1 for g in members) else MATRIX_LOOP
        outside = tuple(sorted({j for i in units for j in reads[i]} - set(units)))
        depth = max(links[g] for g in members) if method == COPY else 0
        cycles = tuple(_cycle(groups[g], rows, units) for g in members) if method == ROTATION else ()
        stages.append(Stage(method, units, outside, depth, cycles))
    return stages


def _strongly_connected_groups(reads: list[set[int]]) -> list[list[int]]:
    """The strongly connected groups of the relation "unit i reads unit j", each sorted, listed so
    that every group comes after the groups it reads (Kosaraju's algorithm, without recursion:
    widths can be in the thousands)."""
    n = len(reads)
    finished: list[int] = []  # units in the order a depth-first search along "reads" leaves them
    visited = [False] * n
    for root in range(n):
        if visited[root]:
            continue
        visited[root] = True
        path = [(root, iter(sorted(reads[root])))]
        while path:
            unit, pending = path[-1]
            following = next((j for j in pending if not visited[j]), None)
            if following is None:
                path.pop()
                finished.append(unit)
            else:
                visited[following] = True
                path.append((following, iter(sorted(reads[following]))))
    readers: list[list[int]] = [[] for _ in range(n)]
    for i, row in enumerate(reads):
        for j in row:
            readers[j].append(i)
    # searching backwards from the last unit left finds its group first: a group no other group
    # reads; each later search finds a group read only by groups already found
    grouped = [False] * n
    groups = []
    for root in reversed(finished):
        if grouped[root]:
            continue
        grouped[root] = True
        group, todo = [], [root]
        while todo:
            unit = todo.pop()
            group.append(unit)
            for reader in readers[unit]:
                if not grouped[reader]:
                    grouped[reader] = True
                    todo.append(reader)
        groups.append(sorted(group))
    return groups[::-1]


def _group_method(group: list[int], rows: list[dict], reads: list[set[int]]) -> str:
    if len(group) == 1:
        weight = rows[group[0]].get(group[0], 0)
        return COPY if weight == 0 else RUNNING_SUM if weight == 1 else SCALED_LOOP
    inside = set(group)
    # each unit takes the previous value of exactly one other unit of the group, with weight 1:
    # a strongly connected group of such units is one cycle of a permutation
    one_each = all(
        i not in rows[i] and len(reads[i] & inside) == 1 and rows[i][next(iter(reads[i] & inside))] == 1 for i in group
    )
    return ROTATION if one_each else MATRIX_LOOP


def _cycle(group: list[int], rows: list[dict], units: tuple[int, ...]) -> tuple[int, ...]:
    """The group's cycle from its first unit, as positions in ``units``."""
    inside = set(group)
    cycle = [group[0]]
    while len(cycle) < len(group):
        cycle.append(next(j for j in rows[cycle[-1]] if j in inside))
    return tuple(units.index(u) for u in cycle)


