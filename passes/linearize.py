"""linearize: schedule the program graph into a layered model (docs/architecture.md).

A recurrent architecture is a path of layers, while a program is a graph whose values may be read
many layers after they are computed. LSRL's debranching turns the graph into a path one rule at a
time and duplicates pass-through units at every branch. Here the whole graph is scheduled at once:

1. Atoms and forms. Linear nodes cost nothing: each is an affine form of *atoms* (the input, the
   relu, mul and state nodes; see ``passes.linear_forms``), and every layer of the model begins
   with an affine map, so forms fold into the layers that read them. The exception is a linear
   value that a reader scales up (a condition times 1e10): it is computed as a unit of whatever
   layer comes next, so that float64 rounds it on its own scale, as the program does.
2. Unit liveness. Only units some output depends on are built (a state's units close under its
   transition), so reading one slot of a vector costs nothing for the others.
3. Levelling. Each atom goes to a layer of its kind (relu, gate, state, gated for gated states,
   or map for the float functions; a scaled-up linear value fits any layer) after every atom it reads; the atoms of one kind that are ready
   together share a layer. The kind of the next layer is the one whose ready atoms start the
   longest remaining chain of layers (critical path). On that sequence of kinds two placements
   are built, every atom as early as it can be and every atom as late as it can be (computed
   where it is needed rather than carried there), and the model with fewer weights is kept. A
   state may read states of its own layer: ``h = A h_prev + C h + W x + b``
   with ``C`` strictly triangular is the recurrence ``h = (I - C)^-1 (A h_prev + W x + b)``, so
   chains of states (a delay of an accumulator, a buffer of a counter) take one layer.
4. Liveness across layers. A reader at layer c of a value computed before layer l < c needs it
   carried through layer l. What is carried are affine combinations rather than units: for each
   reader, the part of its form computed before layer l. Of these a linearly independent subset
   is carried (exact Gaussian elimination; cheapest and sparsest first), and every reader
   rebuilds its form from them, so a sum of many atoms read much later costs one unit per layer.
5. A layer holds a combination v in one unit: identity through a state layer (zero transition),
   an affine layer, a gate layer (gated by the constant 1), a map layer (the identity function),
   a gated state layer (a gate of 0, forgetting the previous value);
   through a relu layer relu(v) where the
   range analysis shows v >= 0, relu(-v) where v <= 0, else the pair relu(v), relu(-v).
6. A final affine layer reads the outputs out, unless the last layer's units are the outputs.

Every unit is labelled (``ir.layered.UnitLabel``): the value it computes, the value it carries, or
the value whose partial sum it carries.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from lsrl.ir import heads
from lsrl.ir.graph import FLOAT_FUNCTIONS, Graph, Node
from lsrl.ir.layered import CARRY, IDENTITY, PART, VALUE, Layer, LayeredModel, UnitLabel
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ONE, ZERO, Number, add, inverse, is_exact, mul
from lsrl.passes import ranges
from lsrl.passes.linear_forms import Form, LinearForms, UnitKey, is_linear, weighted_sum

LAYER_KIND = {
    "relu": "relu", "mul": "gate", "state": "state", "gated_state": "gated", "matrix_state": "matrix",
    "delta_state": "delta", "solve": "solve", **{name: "map" for name in FLOAT_FUNCTIONS},
}  # (a read goes to the layer of the state it reads, whose head computes it: _atoms)
HEADED = ("matrix", "delta", "solve")  # layers whose atoms read whole operands and fill units of their own (ir.heads)
ANY = "any"  # the kind of a scaled-up linear value: any layer's affine map computes it

Terms = dict[UnitKey, Number]  # a linear combination of atom units
Weights = dict[int, Number]  # a linear combination of one layer's units
Holding = list[tuple[int, Number]]  # the units (and weights) whose sum is a value


def _accumulate(target: dict, key: object, value: Number) -> None:
    total = add(target[key], value) if key in target else value
    if total == 0:
        target.pop(key, None)
    else:
        target[key] = total


@dataclass(frozen=True, eq=False)
class Row:
    """One unit a layer reads: ``sum terms[(atom, j)] * atom[j] + const``, and what it means."""

    terms: Terms
    const: Number
    label: UnitLabel  # the value this row is (or, for a state's input, the state it drives)

    def before(self, layer_of: dict[int, int], layer: int) -> Terms:
        return {k: c for k, c in self.terms.items() if layer_of[k[0]] < layer}


def _rows(form: Form, labels: Sequence[UnitLabel]) -> list[Row]:
    return [Row(terms, const, label) for (terms, const), label in zip(form.rows(), labels)]


def _value_labels(node: Node, role: str = VALUE) -> list[UnitLabel]:
    return [UnitLabel(label, role, node=node.id, unit=j) for j, label in enumerate(node.labels)]


@dataclass
class _Atom:
    node: Node
    kind: str  # relu, gate, state or any
    reads: list[list[Row]]  # per operand of the layer (gate: two), one row per unit
    units: list[int] = field(default_factory=list)  # the live units, ascending

    def rows_of(self, unit: int) -> list[Row]:
        """What unit ``unit`` reads: one row per operand, or every operand whole (a head)."""
        if self.kind in HEADED:
            return [row for rows in self.reads for row in rows]
        return [rows[unit] for rows in self.reads]


def _atoms(graph: Graph, forms: LinearForms) -> dict[int, _Atom]:
    atoms: dict[int, _Atom] = {}
    for node in graph.topological_order():
        if node.id in forms.definitions:
            atoms[node.id] = _Atom(node, ANY, [_rows(forms.definitions[node.id], _value_labels(node))])
            continue
        if node.kind == "input" or is_linear(node):
            continue
        kind, operand_ids = LAYER_KIND.get(node.kind), node.operands
        if node.kind == "read":  # a head of the state's layer, reading the state's operands and the query
            state, query = (graph[o] for o in node.operands)
            kind, operand_ids = LAYER_KIND[state.kind], (*state.operands, query.id)
        if kind is None:
            raise ValueError(f"linearize has no layer for %{node.id} ({node.kind})")
        operands = [forms[o] for o in operand_ids]
        if node.kind == "state":
            drive = weighted_sum(node.attrs["B"], operands, node.attrs["bias"])
            reads = [_rows(drive, _value_labels(node, PART))]
        else:
            reads = [_rows(f, _value_labels(graph[o])) for f, o in zip(operands, operand_ids)]
        atoms[node.id] = _Atom(node, kind, reads)
    return atoms


def _mark_live_units(atoms: dict[int, _Atom], outputs: list[Row]) -> None:
    """Give each atom the units that some output depends on."""
    live: dict[int, set[int]] = {a: set() for a in atoms}

    def need(rows: list[Row]) -> None:
        for row in rows:
            for atom, j in row.terms:
                if atom in live:
                    live[atom].add(j)

    need(outputs)
    for atom in reversed(list(atoms.values())):  # every reader before what it reads
        units = live[atom.node.id]
        if atom.kind in HEADED and units:  # a head's units are computed together
            units.update(range(atom.node.dim))
        if atom.kind == "state":  # close under the transition
            stack, transition = list(units), atom.node.attrs["A"].row_items()
            while stack:
                for k, _ in transition[stack.pop()]:
                    if k not in units:
                        units.add(k)
                        stack.append(k)
        atom.units = sorted(units)
        for unit in atom.units:
            need(atom.rows_of(unit))


# --- levelling ------------------------------------------------------------------------------------
@dataclass
class Schedule:
    """Atoms per layer (in topological order) and the kind of each layer."""

    kinds: list[str]
    layers: list[list[int]]
    critical_path: int  # the fewest non-linear layers any schedule needs, kinds aside


def schedules(atoms: dict[int, _Atom]) -> tuple[Schedule, Schedule]:
    """Two placements on one sequence of layer kinds: every atom as early as it can be, and every
    atom as late as it can be. Neither carries less in general: early costs carrying results to
    distant readers, late costs carrying inputs (a sum of ReLUs of the input read at the end is
    cheaper computed early, a condition read at the end is cheaper computed late)."""
    live = {a: atom for a, atom in atoms.items() if atom.units}
    reads = {
        a: {k[0] for u in atom.units for row in atom.rows_of(u) for k in row.terms if k[0] in live}
        for a, atom in live.items()
    }
    readers: dict[int, list[int]] = {a: [] for a in live}
    for a, deps in reads.items():
        for d in deps:
            readers[d].append(a)

    def same_layer_possible(a: int, b: int) -> bool:
        return live[a].kind == live[b].kind == "state"

    remaining: dict[int, int] = {}  # layers from an atom's layer to the last non-linear layer
    for a in reversed(list(live)):
        remaining[a] = max([1] + [remaining[r] + (0 if same_layer_possible(a, r) else 1) for r in readers[a]])

    placed: set[int] = set()
    kinds: list[str] = []
    layers: list[list[int]] = []
    unplaced = list(live)  # topological order
    while unplaced:
        groups: dict[str, list[int]] = {}
        for a in unplaced:
            kind = live[a].kind
            group = groups.setdefault(kind, [])
            if reads[a] <= placed or (kind == "state" and reads[a] <= placed | set(group)):
                group.append(a)
        flexible = groups.pop(ANY, [])
        ready = [k for k in groups if groups[k]]
        # Only scaled-up linear values ready: they get an affine layer of their own.
        best = max(ready, key=lambda k: (max(remaining[a] for a in groups[k]), len(groups[k]))) if ready else "affine"
        members = set(groups.get(best, [])) | set(flexible)
        kinds.append(best)
        layers.append([a for a in unplaced if a in members])
        placed |= members
        unplaced = [a for a in unplaced if a not in members]
    critical_path = max(remaining.values(), default=0)
    return Schedule(kinds, layers, critical_path), Schedule(*_sink(kinds, layers, live, readers), critical_path)


def _sink(
    kinds: list[str], layers: list[list[int]], live: dict[int, _Atom], readers: dict[int, list[int]]
) -> tuple[list[str], list[list[int]]]:
    """Move every atom to the last layer of its kind before its first reader; drop emptied layers."""
    layer_of = {a: l for l, members in enumerate(layers) for a in members}
    for a in reversed(list(live)):
        kind = live[a].kind
        same_layer = [layer_of[r] if kind == live[r].kind == "state" else layer_of[r] - 1 for r in readers[a]]
        limit = min([len(kinds) - 1] + same_layer)
        layer_of[a] = max(l for l in range(layer_of[a], limit + 1) if kind in (ANY, kinds[l]))
    sunk = [[a for a in live if layer_of[a] == l] for l in range(len(kinds))]
    kept = [l for l, members in enumerate(sunk) if members]
    return [kinds[l] for l in kept], [sunk[l] for l in kept]


# --- carrying ------------------------------------------------------------------------------------
@dataclass
class _Carried:
    """A combination carried through one layer: terms + const, its label and the units holding it."""

    terms: Terms
    const: Number
    label: UnitLabel
    units: Holding = field(default_factory=list)


class _Carries:
    """The combinations carried through one layer: a basis chosen among the candidates offered,
    and, for any combination of their span, its coefficients on that basis.

    Exact combinations are reduced by Gaussian elimination; a combination with a float weight is
    matched by equality (rounding would make elimination unsound).
    """

    def __init__(self) -> None:
        self.basis: list[_Carried] = []
        self._echelon: list[tuple[UnitKey, Terms, dict[int, Number]]] = []
        self._inexact: dict[frozenset, int] = {}

    def _reduce(self, terms: Terms) -> tuple[Terms, dict[int, Number]]:
        rest, combination = dict(terms), {}
        for pivot, row, row_combination in self._echelon:
            if pivot in rest:
                factor = mul(rest[pivot], inverse(row[pivot]))
                for k, v in row.items():
                    _accumulate(rest, k, -mul(factor, v))
                for b, v in row_combination.items():
                    _accumulate(combination, b, mul(factor, v))
        return rest, combination

    def offer(self, carried: _Carried) -> None:
        if not all(is_exact(c) for c in carried.terms.values()):
            key = frozenset(carried.terms.items())
            if key not in self._inexact:
                self._inexact[key] = len(self.basis)
                self.basis.append(carried)
            return
        rest, combination = self._reduce(carried.terms)
        if rest:
            index = len(self.basis)
            self.basis.append(carried)
            self._echelon.append((min(rest), rest, {index: ONE, **{b: -v for b, v in combination.items()}}))

    def express(self, terms: Terms) -> dict[int, Number]:
        key = frozenset(terms.items())
        if key in self._inexact:
            return {self._inexact[key]: ONE}
        rest, combination = self._reduce(terms)
        assert not rest, "a carried combination outside the carried span"
        return combination


def _candidate(row: Row, part: Terms, labels: dict[UnitKey, UnitLabel]) -> _Carried:
    """What to carry for ``part`` of ``row``: one atom unit itself, the row's value, or the part."""
    if len(part) == 1:
        (key, _), = part.items()
        return _Carried({key: ONE}, ZERO, replace(labels[key], role=CARRY))
    if len(part) == len(row.terms) and row.label.role == VALUE:
        return _Carried(part, row.const, replace(row.label, role=CARRY))
    return _Carried(part, ZERO, replace(row.label, role=PART))


def _holding(kind: str, interval: ranges.Interval) -> list[tuple[int, bool]]:
    """How a layer of ``kind`` holds a value in ``interval``: (sign, rectified) per unit."""
    if kind != "relu" or interval.nonnegative:
        return [(1, False)]
    if interval.nonpositive:
        return [(-1, False)]
    return [(1, True), (-1, True)]


# --- building ------------------------------------------------------------------------------------
class _LayerRows:
    """The rows of one layer under construction: labels, input maps, memory, initial values."""

    def __init__(self) -> None:
        self.units: list[UnitLabel] = []
        self.main: list[tuple[Weights, Number]] = []
        self.second: list[tuple[Weights, Number]] = []  # a gate layer's other factor
        self.memory: list[Weights] = []  # a state layer's transition
        self.init: list[Number] = []
        self.functions: list[str] = []  # a map layer's function of each unit
        self.heads: list = []  # a matrix, delta or solve layer's heads (ir.heads)
        self.shift: dict[int, Number] = {}  # a solve head's shift, by unit
        self.steps = 0  # a solve layer's conjugate-gradient steps (0: a direct solve)

    def add(self, label: UnitLabel, main: tuple[Weights, Number], second=({}, ONE), memory=None, init=ZERO,
            function: str = IDENTITY) -> int:
        self.units.append(label)
        self.main.append(main)
        self.second.append(second)
        self.memory.append(memory or {})
        self.init.append(init)
        self.functions.append(function)
        return len(self.units) - 1

    def layer(self, kind: str, d_in: int) -> Layer:
        attrs = {"W": _matrix(self.main, d_in), "b": tuple(c for _, c in self.main)}
        if kind in ("gate", "gated"):
            attrs.update({"W2": _matrix(self.second, d_in), "b2": tuple(c for _, c in self.second)})
        if kind == "gated":
            attrs["init"] = tuple(self.init)
        if kind == "state":
            width = len(self.units)
            attrs["A"] = Matrix(width, width, {(i, k): v for i, m in enumerate(self.memory) for k, v in m.items()})
            attrs["init"] = tuple(self.init)
        if kind == "map":
            attrs["functions"] = tuple(self.functions)
        if kind in HEADED:
            attrs["heads"] = heads.encode(self.heads)
        if kind == "solve":
            attrs["shift"] = tuple(self.shift.get(u, ZERO) for u in range(len(self.units)))
            attrs["steps"] = (self.steps,)
        return Layer(kind, attrs, tuple(self.units))


def _matrix(rows: list[tuple[Weights, Number]], cols: int) -> Matrix:
    return Matrix(len(rows), cols, {(i, j): w for i, (ws, _) in enumerate(rows) for j, w in ws.items()})


class _Builder:
    def __init__(
        self, graph: Graph, atoms: dict[int, _Atom], plan: Schedule, outputs: list[Row], bounds: ranges.Ranges
    ):
        self.graph, self.atoms, self.plan, self.outputs, self.ranges = graph, atoms, plan, outputs, bounds
        x = graph.input
        self.layer_of: dict[int, int] = {x.id: 0}
        for l, members in enumerate(plan.layers, start=1):
            self.layer_of.update({a: l for a in members})
        self.labels: dict[UnitKey, UnitLabel] = {(x.id, j): l for j, l in enumerate(_value_labels(x))}
        for atom in atoms.values():
            self.labels.update({(atom.node.id, j): l for j, l in enumerate(_value_labels(atom.node))})
        # per layer (0: the input): the units holding each atom unit computed there
        self.holding: list[dict[UnitKey, Holding]] = [{(x.id, j): [(j, ONE)] for j in range(x.dim)}]
        self.carries: list[_Carries] = [_Carries()]
        self.widths: list[int] = [x.dim]

    def read(self, terms: Terms, const: Number, layer: int) -> tuple[Weights, Number]:
        """A combination of atom units from layers <= ``layer`` as weights on that layer's units."""
        weights: Weights = {}
        earlier: Terms = {}
        for key, c in terms.items():
            if self.layer_of[key[0]] == layer:
                for unit, w in self.holding[layer][key]:
                    _accumulate(weights, unit, mul(c, w))
            else:
                earlier[key] = c
        if earlier:
            carries = self.carries[layer]
            for b, c in carries.express(earlier).items():
                carried = carries.basis[b]
                const = add(const, -mul(c, carried.const))
                for unit, w in carried.units:
                    _accumulate(weights, unit, mul(c, w))
        return weights, const

    def _wanted(self) -> list[list[tuple[Row, Terms]]]:
        """Per layer l (1-based), the parts of every later reader's rows computed before layer l."""
        n_layers = len(self.plan.layers)
        wanted: list[list[tuple[Row, Terms]]] = [[] for _ in range(n_layers + 2)]
        readers = [(self.layer_of[a], row) for a, atom in self.atoms.items() for u in atom.units for row in atom.rows_of(u)]
        readers += [(n_layers + 1, row) for row in self.outputs]
        for at, row in readers:
            for l in range(1, at):
                part = row.before(self.layer_of, l)
                if part:
                    wanted[l].append((row, part))
        return wanted

    def build(self) -> list[Layer]:
        wanted = self._wanted()
        plan = enumerate(zip(self.plan.kinds, self.plan.layers), start=1)
        layers = [self._layer(l, kind, members, wanted[l]) for l, (kind, members) in plan]
        readout = [self.read(row.terms, row.const, len(layers)) for row in self.outputs]
        if not layers or not self._is_identity(readout, layers[-1].width):
            units = tuple(row.label for row in self.outputs)
            attrs = {"W": _matrix(readout, self.widths[-1]), "b": tuple(c for _, c in readout)}
            layers.append(Layer("affine", attrs, units))
        return layers

    @staticmethod
    def _is_identity(readout: list[tuple[Weights, Number]], width: int) -> bool:
        return len(readout) == width and all(ws == {i: 1} and c == 0 for i, (ws, c) in enumerate(readout))

    def _hold(self, rows: _LayerRows, kind: str, l: int, terms: Terms, const: Number, label: UnitLabel) -> Holding:
        """Add the units that hold ``terms + const`` (read from layer l - 1) to layer l."""
        weights, c = self.read(terms, const, l - 1)
        holding = []
        # a gate layer multiplies the value by 1, a gated state's gate forgets its previous value
        keep = ({}, ZERO) if kind == "gated" else ({}, ONE)
        for sign, rectified in _holding(kind, self.ranges.combination(terms, const)):
            signed = ({j: mul(sign, w) for j, w in weights.items()}, mul(sign, c))
            unit = rows.add(replace(label, sign=label.sign * sign, rectified=rectified), signed, keep)
            holding.append((unit, ONE if sign > 0 else -ONE))
        return holding

    def _layer(self, l: int, kind: str, members: list[int], wanted: list[tuple[Row, Terms]]) -> Layer:
        rows = _LayerRows()
        holding: dict[UnitKey, Holding] = {}
        self.holding.append(holding)
        for a in members:
            atom = self.atoms[a]
            if atom.kind == "state":  # a state's units read each other through its transition
                holding.update({(a, j): [(len(rows.units) + i, ONE)] for i, j in enumerate(atom.units)})
            for j in atom.units:
                key, label, operands = (a, j), self.labels[(a, j)], atom.rows_of(j)
                if atom.kind == ANY:
                    holding[key] = self._hold(rows, kind, l, operands[0].terms, operands[0].const, label)
                elif atom.kind == "state":
                    rows.add(label, *self._state_row(atom, j, l, rows))
                elif atom.kind in HEADED:
                    holding.update(self._head(rows, atom, l))
                    break  # the head places every unit of the atom at once
                elif atom.kind == "gated":  # operands (gate, drive): the drive is the main row
                    gate = self.read(operands[0].terms, operands[0].const, l - 1)
                    drive = self.read(operands[1].terms, operands[1].const, l - 1)
                    holding[key] = [(rows.add(label, drive, gate, init=atom.node.attrs["init"][j]), ONE)]
                else:
                    main = self.read(operands[0].terms, operands[0].const, l - 1)
                    second = self.read(operands[1].terms, operands[1].const, l - 1) if kind == "gate" else ({}, ONE)
                    function = atom.node.kind if kind == "map" else IDENTITY
                    holding[key] = [(rows.add(label, main, second, function=function), ONE)]
        carries = self._choose_carries(kind, wanted)
        for carried in carries.basis:
            carried.units = self._hold(rows, kind, l, carried.terms, carried.const, carried.label)
        self.carries.append(carries)
        self.widths.append(len(rows.units))
        return rows.layer(kind, self.widths[l - 1])

    def _head(self, rows: _LayerRows, atom: _Atom, l: int) -> dict[UnitKey, Holding]:
        """A matrix, delta or solve atom (or the read of a matrix or delta state, its head carrying
        the read): units passing its operands through, then the units it fills."""
        starts = []
        for operand_rows in atom.reads:
            starts.append(len(rows.units))
            for row in operand_rows:
                rows.add(replace(row.label, role=PART), self.read(row.terms, row.const, l - 1))
        out = len(rows.units)
        node = atom.node
        if node.kind == "solve":
            head = heads.SolveHead(starts[0], node.dim, starts[1], out)
            rows.shift.update({out + u: v for u, v in enumerate(node.attrs["shift"])})
            rows.steps = node.attrs["steps"]
        else:
            state = self.graph[node.operands[0]] if node.kind == "read" else node
            query = starts[-1] if node.kind == "read" else heads.NO_QUERY
            keys = state.attrs["keys"]
            values = state.dim // keys
            if state.kind == "matrix_state":
                decays = len(atom.reads[0])
                head = heads.MatrixHead(starts[0], decays, starts[1], keys, starts[2], values, query, out)
            else:
                head = heads.DeltaHead(starts[0], starts[1], starts[2], keys, starts[3], values, query, out)
        rows.heads.append(head)
        holding = {}
        for j in range(node.dim):
            holding[(node.id, j)] = [(rows.add(self.labels[(node.id, j)], ({}, ZERO)), ONE)]
        return holding

    def _state_row(self, atom: _Atom, j: int, l: int, rows: _LayerRows) -> tuple[tuple, tuple, Weights, Number]:
        """A state unit's input map and memory, with the states of this layer it reads substituted:
        ``h = A h_prev + C h + W x + b`` solved for h in topological order."""
        row = atom.rows_of(j)[0]
        holding = self.holding[l]
        memory = {holding[(atom.node.id, k)][0][0]: c for k, c in atom.node.attrs["A"].row_items()[j]}
        weights, const = self.read(row.before(self.layer_of, l), row.const, l - 1)
        for key, c in row.terms.items():
            if self.layer_of[key[0]] == l:
                same = holding[key][0][0]
                for k, v in rows.memory[same].items():
                    _accumulate(memory, k, mul(c, v))
                for k, v in rows.main[same][0].items():
                    _accumulate(weights, k, mul(c, v))
                const = add(const, mul(c, rows.main[same][1]))
        return (weights, const), ({}, ONE), memory, atom.node.attrs["init"][j]

    def _choose_carries(self, kind: str, wanted: list[tuple[Row, Terms]]) -> _Carries:
        unique = {}
        for row, part in reversed(wanted):  # the first reader's label wins
            carried = _candidate(row, part, self.labels)
            unique[(frozenset(carried.terms.items()), carried.const)] = carried
        cost = {id(c): len(_holding(kind, self.ranges.combination(c.terms, c.const))) for c in unique.values()}
        carries = _Carries()
        for carried in sorted(unique.values(), key=lambda c: (cost[id(c)], len(c.terms))):
            carries.offer(carried)
        return carries


def _prepare(graph: Graph) -> tuple[dict[int, _Atom], list[Row]]:
    """The atoms with their live units, and the rows the outputs read.

    The outputs read a scaled-up linear value as such where an atom reads it too (it is computed
    anyway), and otherwise its definition (the final affine layer computes it at no cost).
    """
    forms = LinearForms(graph)
    atoms = _atoms(graph, forms)
    read = {k[0] for atom in atoms.values() for rows in atom.reads for row in rows for k in row.terms}
    outputs = [
        row for o in graph.outputs for row in _rows(forms.expanded(forms[o.node], read), _value_labels(graph[o.node]))
    ]
    _mark_live_units(atoms, outputs)
    return atoms, outputs


def layer_schedule(graph: Graph) -> Schedule:
    """The earliest placement of ``graph``'s atoms (for its layer kinds and critical path)."""
    return schedules(_prepare(graph)[0])[0]


def linearize(graph: Graph, input_range: object = None, max_len: int | None = None) -> LayeredModel:
    """The layered model of ``graph`` (best canonicalized first: ``passes.lower`` does both):
    of the earliest and the latest placement, the one with fewer dense, then non-zero, weights.

    ``input_range`` and ``max_len`` are the assumptions of the range analysis (``passes.ranges``):
    the model is exact for inputs inside the range, over sequences up to ``max_len`` steps.
    """
    atoms, outputs = _prepare(graph)
    bounds = ranges.analyze(graph, input_range, max_len)
    x = graph.input
    models = [
        LayeredModel(x.dim, _Builder(graph, atoms, plan, outputs, bounds).build(), x.labels, graph.output_labels)
        for plan in schedules(atoms)
    ]
    return min(models, key=lambda m: (m.stats()["dense_params"], m.stats()["nonzeros"]))
