"""Linear forms: every linear node's value as an affine map of the graph's atoms.

A node is *linear* when its value is an affine function of its operands with compile-time weights:
``const``, ``affine``, ``slice``, ``concat``, and a ``state`` whose transition is zero (it keeps
nothing from the previous step). The input, ``relu``, ``mul`` and states with memory are *atoms*.
Composing linear nodes down to atoms is the common step of constant folding, affine folding,
folding into state inputs, range analysis and linearize, so it lives here once.

One kind of linear node is an atom too: one that a reader *scales up*, by a weight of magnitude
above :data:`LARGE_WEIGHT` (LSRL's conditionals multiply a 0/1 condition by 1e10). Folded into
its reader, ``-1e10 * (1 - step) + x`` becomes ``1e10 step - 1e10 + x``, and float64 rounds the
sum at the scale of 1e10: x = 1/3 comes out 6e-7 off. Computed on its own, ``1 - step`` is
exactly 0 where the step saturates, and the reader gets x exactly. So such a node is computed
once, as a unit of the model, before it is read; everywhere else folding is harmless and saves
the layer that computing a value on its own costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from lsrl.ir.graph import Graph, Node
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO, Number, add

Vector = tuple[Number, ...]
UnitKey = tuple[int, int]  # (atom node id, unit index)

# A linear node that a reader weighs by more than this is computed on its own.
LARGE_WEIGHT = 2**20


@dataclass(frozen=True, eq=False)
class Form:
    """``sum_k terms[k] @ value(k) + bias``: an affine map of atom values (atom id -> weight)."""

    terms: dict[int, Matrix]
    bias: Vector

    @property
    def dim(self) -> int:
        return len(self.bias)

    @property
    def is_constant(self) -> bool:
        return not self.terms

    @classmethod
    def of_atom(cls, node_id: int, dim: int) -> "Form":
        return cls({node_id: Matrix.eye(dim)}, (ZERO,) * dim)

    @classmethod
    def constant(cls, value: Vector) -> "Form":
        return cls({}, tuple(value))

    def mapped(self, weight: Matrix) -> "Form":
        """``weight @ self``."""
        terms = {atom: weight if m.is_identity() else weight @ m for atom, m in self.terms.items()}
        return Form({a: m for a, m in terms.items() if m.nnz}, tuple(weight.apply(self.bias)))

    def __add__(self, other: "Form") -> "Form":
        terms = dict(self.terms)
        for atom, m in other.terms.items():
            terms[atom] = terms[atom] + m if atom in terms else m
        return Form(
            {a: m for a, m in terms.items() if m.nnz}, tuple(add(a, b) for a, b in zip(self.bias, other.bias))
        )

    def rows(self) -> list[tuple[dict[UnitKey, Number], Number]]:
        """Unit by unit: ``({(atom, j): weight}, constant)``."""
        rows: list[dict[UnitKey, Number]] = [{} for _ in range(self.dim)]
        for atom, weight in self.terms.items():
            for r, items in enumerate(weight.row_items()):
                for j, w in items:
                    rows[r][(atom, j)] = w
        return list(zip(rows, self.bias))

    def is_simple(self) -> bool:
        """Every unit is a constant or one scaled atom unit: float64 evaluates it without rounding
        a sum, so folding it into a reader changes nothing."""
        return all(len(terms) + (const != 0) <= 1 for terms, const in self.rows())

    def is_atom(self) -> int | None:
        """The atom this form merely repeats (identity weight, zero bias), if any."""
        if len(self.terms) != 1 or any(b != 0 for b in self.bias):
            return None
        (atom, weight), = self.terms.items()
        return atom if weight.is_identity() else None


LINEAR_KINDS = ("const", "affine", "slice", "concat")  # and a state with a zero transition


def is_linear(node: Node) -> bool:
    if node.kind in LINEAR_KINDS:
        return True
    return node.kind == "state" and node.attrs["A"].nnz == 0


def weighted_sum(weights: Sequence[Matrix], operands: Sequence[Form], bias: Vector) -> Form:
    total = Form.constant(bias)
    for weight, form in zip(weights, operands):
        total = total + form.mapped(weight)
    return total


def linear_form(node: Node, operands: Sequence[Form]) -> Form:
    """The form of a linear node, given the forms of its operands."""
    kind, attrs = node.kind, node.attrs
    if kind == "const":
        return Form.constant(attrs["value"])
    if kind == "affine":
        return weighted_sum(attrs["weights"], operands, attrs["bias"])
    if kind == "state":  # zero transition: s_t = sum B_i u_i + bias
        return weighted_sum(attrs["B"], operands, attrs["bias"])
    if kind == "slice":
        start, stop = attrs["start"], attrs["stop"]
        pick = Matrix.selection(node.dim, operands[0].dim, ((i, start + i) for i in range(stop - start)))
        return operands[0].mapped(pick)
    if kind == "concat":
        total = Form.constant((ZERO,) * node.dim)
        offset = 0
        for form in operands:
            place = Matrix.selection(node.dim, form.dim, ((offset + i, i) for i in range(form.dim)))
            total = total + form.mapped(place)
            offset += form.dim
        return total
    raise ValueError(f"%{node.id} ({kind}) is not a linear node")



class LinearForms(Mapping[int, Form]):
    """``forms[node_id]``: how readers see a node, as a form of atoms (an atom's form is itself).

    ``definitions`` holds the linear nodes that are atoms (scaled up by a reader), each with the
    form it is computed from.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self._forms: dict[int, Form] = {}
        self.definitions: dict[int, Form] = {}
        scaled_up = _scaled_up(graph)
        for node in graph.topological_order():
            if not is_linear(node):
                self._forms[node.id] = Form.of_atom(node.id, node.dim)
                continue
            form = linear_form(node, [self._forms[o] for o in node.operands])
            if node.id in scaled_up and not form.is_simple():
                self.definitions[node.id] = form
                form = Form.of_atom(node.id, node.dim)
            self._forms[node.id] = form

    def __getitem__(self, node_id: int) -> Form:
        return self._forms[node_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._forms)

    def __len__(self) -> int:
        return len(self._forms)

    def definition(self, node_id: int) -> Form:
        """What a node computes from atoms (a scaled-up linear node's definition, else its form)."""
        return self.definitions.get(node_id, self._forms[node_id])

    def expanded(self, form: Form, keep: set[int] = frozenset()) -> Form:
        """``form`` with every scaled-up linear node not in ``keep`` replaced by its definition."""
        total = Form.constant(form.bias)
        for atom, weight in form.terms.items():
            if atom in self.definitions and atom not in keep:
                total = total + self.expanded(self.definitions[atom], keep).mapped(weight)
            else:
                total = total + Form({atom: weight}, (ZERO,) * form.dim)
        return total


def _scaled_up(graph: Graph) -> set[int]:
    """The nodes some reader weighs by more than LARGE_WEIGHT."""
    out = set()
    for node in graph:
        weights = node.attrs.get("weights") or node.attrs.get("B") or ()
        for operand, weight in zip(node.operands, weights):
            if any(abs(w) > LARGE_WEIGHT for w in weight.entries.values()):
                out.add(operand)
    return out
