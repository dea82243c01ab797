"""The structured kinds become the kinds every later stage knows.

``expand_matrix_states``: for targets whose layered model has matrix heads (``matrix_heads``:
``matrix`` and ``delta`` layers, ``ir.heads``), a ``read`` of a ``matrix_state`` or
``delta_state`` that nothing else uses stays whole, and becomes part of the state's head, which
then emits the read (``len(v)`` units) instead of the state (``keys * len(v)``); every other read
becomes the ``mul`` and ``affine`` nodes that compute it. For the other targets every read is
expanded so, and a ``matrix_state`` becomes a gated state over its ``keys * len(v)`` units, entry
``(i, j)`` gated by ``d_i`` and driven by the product ``k_i v_j``.

``expand_pointwise``: ``step`` and ``select`` nodes become the ReLUs that compute them.

After this pass the graph holds only the kinds every later stage knows (``degate``,
``linearize`` and the targets build from ReLUs, products, states and heads):

- ``step(x; low, high) = relu((x - low) / w) - relu((x - high) / w)``, ``w = high - low``: the two
  halves differ by exactly 1 where the step saturates;
- ``select(c, v; big) = relu(v - big c) - relu(-v - big c)``.

The expanded node keeps its id, name, location and labels and becomes the ``affine`` difference of
its two ReLUs (a read: the ``affine`` sum of its products); the inner nodes are named after it
(``larger/step/relu``).
"""

from __future__ import annotations

from lsrl.ir.graph import Graph, Node
from lsrl.ir.matrix import Matrix
from lsrl.ir.numbers import ZERO, inverse, mul

HEADED_STATES = ("matrix_state", "delta_state")  # the kinds whose layers' heads can emit a read


def expand_matrix_states(graph: Graph, matrix_heads: bool = True) -> Graph:
    out = graph.copy()
    users = out.users()
    outputs = {o.node for o in out.outputs}
    for node in list(out):
        if node.kind == "read":
            state = out[node.operands[0]]
            fused = state.kind in HEADED_STATES and users[state.id] == [node.id] and state.id not in outputs
            if not (matrix_heads and fused):
                _expand_read(out, node)
    for node in list(out):
        if node.kind == "matrix_state" and not matrix_heads:
            _expand_matrix_state(out, node)
    return out


def _expand_read(graph: Graph, node: Node) -> None:
    """``sum_i q_i S[i, :]`` as the products ``q_i S[i, j]`` and their sums over i."""
    state, query = node.operands
    keys, width = graph[query].dim, node.dim
    size = keys * width
    spread = Matrix.selection(size, keys, ((i * width + j, i) for i in range(keys) for j in range(width)))
    summed = Matrix.selection(width, size, ((j, i * width + j) for i in range(keys) for j in range(width)))
    spread_query = graph.add("affine", [query], size, {"weights": (spread,), "bias": (ZERO,) * size},
                             f"{node.name}/query", node.loc).id
    products = graph.add("mul", [spread_query, state], size, {}, f"{node.name}/products", node.loc).id
    node.kind, node.operands, node.attrs = "affine", (products,), {"weights": (summed,), "bias": (ZERO,) * width}


def _spread(graph: Graph, node: Node, operand: int, pick, part: str) -> int:
    """An affine node holding, at unit ``(i, j)`` of ``node``, unit ``pick(i, j)`` of ``operand``."""
    keys = node.attrs["keys"]
    width = node.dim // keys
    entries = (((i * width + j), pick(i, j)) for i in range(keys) for j in range(width))
    weight = Matrix.selection(node.dim, graph[operand].dim, entries)
    return graph.add("affine", [operand], node.dim, {"weights": (weight,), "bias": (ZERO,) * node.dim},
                     f"{node.name}/{part}", node.loc).id


def _expand_matrix_state(graph: Graph, node: Node) -> None:
    decay, key, value = node.operands
    scalar = graph[decay].dim == 1
    gate = _spread(graph, node, decay, lambda i, j: 0 if scalar else i, "decay")
    keys = _spread(graph, node, key, lambda i, j: i, "key")
    values = _spread(graph, node, value, lambda i, j: j, "value")
    drive = graph.add("mul", [keys, values], node.dim, {}, f"{node.name}/write", node.loc).id
    node.kind, node.operands, node.attrs = "gated_state", (gate, drive), {"init": (ZERO,) * node.dim}


def expand_pointwise(graph: Graph) -> Graph:
    out = graph.copy()
    for node in list(out):
        if node.kind == "step":
            _expand_step(out, node)
        elif node.kind == "select":
            _expand_select(out, node)
    return out


def _relu_of(graph: Graph, node: Node, terms: list[tuple[Matrix, int]], bias: tuple, part: str) -> int:
    """A ReLU of ``sum W x + bias``, named after the node it helps compute."""
    merged: dict[int, Matrix] = {}
    for weight, operand in terms:  # a select of a value by itself reads one operand twice
        merged[operand] = merged[operand] + weight if operand in merged else weight
    inner = graph.add("affine", list(merged), node.dim, {"weights": tuple(merged.values()), "bias": bias},
                      f"{node.name}/{part}", node.loc)
    return graph.add("relu", [inner.id], node.dim, {}, f"{node.name}/relu", node.loc).id


def _become_difference(node: Node, positive: int, negative: int) -> None:
    node.kind, node.operands = "affine", (positive, negative)
    node.attrs = {"weights": (Matrix.eye(node.dim), Matrix.eye(node.dim, -1)), "bias": (ZERO,) * node.dim}


def _expand_step(graph: Graph, node: Node) -> None:
    low, high = node.attrs["low"], node.attrs["high"]
    slopes = tuple(inverse(h - lo) for lo, h in zip(low, high))
    scale = Matrix.diag(slopes)
    (x,) = node.operands
    rising = _relu_of(graph, node, [(scale, x)], tuple(-mul(s, lo) for s, lo in zip(slopes, low)), "rise")
    saturated = _relu_of(graph, node, [(scale, x)], tuple(-mul(s, h) for s, h in zip(slopes, high)), "top")
    _become_difference(node, rising, saturated)


def _expand_select(graph: Graph, node: Node) -> None:
    condition, value = node.operands
    scaled = Matrix.diag(tuple(-b for b in node.attrs["big"]))
    zero = (ZERO,) * node.dim
    kept = _relu_of(graph, node, [(Matrix.eye(node.dim), value), (scaled, condition)], zero, "plus")
    negated = _relu_of(graph, node, [(Matrix.eye(node.dim, -1), value), (scaled, condition)], zero, "minus")
    _become_difference(node, kept, negated)
