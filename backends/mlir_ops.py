"""Operations on tensors, made with the upstream MLIR Python bindings that ``iree-base-compiler``
ships (``iree.compiler.ir``, dialects ``arith``, ``linalg``, ``math``, ``tensor``): products, elementwise
and reducing ``linalg.generic`` ops, shapes, slices, and constants kept as ``dense_resource``
blobs. ``backends/mlir_module.py`` builds the mlir target's functions from them.

Every helper works inside the builder's context, location and insertion point; sizes are Python
ints where static and ``index`` values where dynamic (the batch, the time, the rows).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

NUMPY_DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class Fixed:
    """An index of an operand of ``TensorOps.generic`` that is the same at every loop point."""

    index: int


class TensorOps:
    """The helpers, for tensors of one float element type (``dtype``)."""

    def __init__(self, dtype: str):
        from iree.compiler import ir
        from iree.compiler.dialects import arith, flow, func, linalg, math, scf, tensor

        self.ir, self.arith, self.func, self.linalg, self.scf, self.tensor = ir, arith, func, linalg, scf, tensor
        self.math, self.flow = math, flow
        self.dtype = dtype
        self.element = ir.F32Type.get() if dtype == "float32" else ir.F64Type.get()
        self.index = ir.IndexType.get()
        self.dynamic = ir.ShapedType.get_dynamic_size()
        self.batch = self.time = self.rows = None  # the dynamic sizes of the function being built
        self.resources: dict[str, tuple] = {}  # constant name -> (array, its dense_resource attribute)

    # --- linear algebra --------------------------------------------------------------------------------
    def linear(self, x, weight, bias):
        """``x W^T + b`` (``x``: ``[rows, d_in]``): the product accumulated onto the bias."""
        return self.matmul(x, weight, self.broadcast_rows(bias, [self.rows]))

    def matmul(self, x, weight, onto, name: str | None = None):
        """``onto + x W^T`` for ``x`` ``[rows, k]`` and ``W`` ``[width, k]`` (transposed by the maps)."""
        ir = self.ir
        d = ir.AffineDimExpr.get
        maps = [ir.AffineMap.get(3, 0, [d(0), d(2)]), ir.AffineMap.get(3, 0, [d(1), d(2)]),
                ir.AffineMap.get(3, 0, [d(0), d(1)])]
        with self.named(name):
            return self.linalg.matmul(x, weight, outs=[onto], indexing_maps=maps)

    def elementwise(self, operands: list, body: Callable, sizes: list, name: str):
        return self.generic([(v, list(range(len(sizes)))) for v in operands], sizes, ["parallel"] * len(sizes), body, name=name)

    def generic(self, operands: list, sizes: list, iterators: list[str], body: Callable, result_dims: list[int] | None = None,
                start=None, name: str | None = None, results: int = 0):
        """A ``linalg.generic`` over ``len(iterators)`` loops: ``operands`` are ``(value, dims)``, read
        at those loop dimensions (or ``Fixed`` indices); the result, of ``sizes``, is written at ``result_dims`` (default:
        the first loops) as ``body(*operand elements)``, or with ``start`` (its first value)
        ``body(*operand elements, the result so far)``. With ``results`` > 0, ``body`` returns that
        many values and the op that many results of ``sizes`` (a list; no ``start``)."""
        ir, linalg = self.ir, self.linalg
        loops, count = len(iterators), max(results, 1)
        outs = [self.tensor.empty(sizes, self.element) if start is None else start for _ in range(count)]
        dims = [dims for _, dims in operands] + [list(range(len(sizes))) if result_dims is None else result_dims] * count
        maps = [ir.AffineMapAttr.get(ir.AffineMap.get(loops, 0, [self.affine(d) for d in group])) for group in dims]
        kinds = [ir.Attribute.parse(f"#linalg.iterator_type<{kind}>") for kind in iterators]
        with self.named(name):
            op = linalg.GenericOp([out.type for out in outs], [v for v, _ in operands], outs, ir.ArrayAttr.get(maps),
                                  ir.ArrayAttr.get(kinds))
        block = op.regions[0].blocks.append(*[ir.RankedTensorType(v.type).element_type for v, _ in operands], *[self.element] * count)
        with ir.InsertionPoint(block):
            args = list(block.arguments)
            values = body(*(args[:len(operands) + 1] if start is not None else args[:len(operands)]))
            linalg.YieldOp(list(values) if results else [values])
        return list(op.results) if results else op.result

    def affine(self, dim):
        """The expression of one of an operand's indices: a loop dimension, or a ``Fixed`` index."""
        if isinstance(dim, Fixed):
            return self.ir.AffineConstantExpr.get(dim.index)
        return self.ir.AffineDimExpr.get(dim)

    def loop_index(self, dim: int):
        return self.linalg.IndexOp(self.ir.IntegerAttr.get(self.ir.IntegerType.get_signless(64), dim)).result

    # --- shapes -----------------------------------------------------------------------------------------
    def type(self, sizes: Sequence[int | None], element=None):
        return self.ir.RankedTensorType.get([self.dynamic if s is None else s for s in sizes], element or self.element)

    def sized_type(self, sizes: Sequence) -> object:
        """The tensor type of ``sizes`` (ints static, index values dynamic)."""
        return self.type([s if isinstance(s, int) else None for s in sizes])

    def width(self, value) -> int:
        return self.ir.RankedTensorType(value.type).shape[-1]

    def dim(self, value, axis: int):
        return self.tensor.dim(value, self.constant_index(axis))

    def collapse(self, value, groups: list[list[int]], name: str | None = None):
        shape = self.ir.RankedTensorType(value.type).shape
        sizes = [None if any(shape[d] == self.dynamic for d in group) else int(np.prod([shape[d] for d in group]))
                 for group in groups]
        with self.named(name):
            return self.tensor.collapse_shape(self.type(sizes), value, self.reassociation(groups))

    def expand(self, value, groups: list[list[int]], sizes: list, name: str | None = None):
        dynamic = [s for s in sizes if not isinstance(s, int)]
        static = [s if isinstance(s, int) else self.dynamic for s in sizes]
        with self.named(name):
            return self.tensor.expand_shape(self.sized_type(sizes), value, self.reassociation(groups), dynamic, static)

    def reassociation(self, groups: list[list[int]]):
        i64 = self.ir.IntegerType.get_signless(64)
        return self.ir.ArrayAttr.get([self.ir.ArrayAttr.get([self.ir.IntegerAttr.get(i64, d) for d in group]) for group in groups])

    def slice(self, value, offsets: list, sizes: list, drop: Sequence[int] = (), name: str | None = None):
        """``value[offsets : offsets + sizes]`` (unit strides), without the dimensions ``drop``."""
        kept = [s for d, s in enumerate(sizes) if d not in drop]
        with self.named(name):
            return self.tensor.extract_slice(self.sized_type(kept), value, *self.mixed(offsets, sizes))

    def insert(self, value, into, offsets: list, sizes: list):
        return self.tensor.insert_slice(value, into, *self.mixed(offsets, sizes))

    def mixed(self, offsets: list, sizes: list) -> list:
        """The dynamic and static offsets, sizes and strides of a slice op."""
        dynamic = lambda values: [v for v in values if not isinstance(v, int)]  # noqa: E731
        static = lambda values: [v if isinstance(v, int) else self.dynamic for v in values]  # noqa: E731
        ones = [1] * len(sizes)
        return [dynamic(offsets), dynamic(sizes), [], static(offsets), static(sizes), ones]

    def concat(self, values: list, axis: int, sizes: list):
        return values[0] if len(values) == 1 else self.tensor.concat(self.sized_type(sizes), axis, values)

    def pad(self, value, axis: int, extra):
        """``value`` with ``extra`` (an int or an index value) zeros after the end of ``axis``."""
        if isinstance(extra, int) and extra == 0:
            return value
        ir, tensor = self.ir, self.tensor
        shape = ir.RankedTensorType(value.type).shape
        rank = len(shape)
        static = isinstance(extra, int)
        high = [(extra if static else self.dynamic) if d == axis else 0 for d in range(rank)]
        sizes = [shape[d] + extra if d == axis and static and shape[d] != self.dynamic else shape[d] for d in range(rank)]
        kind = self.type([None if size == self.dynamic or (d == axis and not static) else size for d, size in enumerate(sizes)])
        padded = tensor.PadOp(kind, value, [], [] if static else [extra], [0] * rank, high)
        with ir.InsertionPoint(padded.region.blocks.append(*[self.index] * rank)):
            tensor.YieldOp(self.arith.constant(self.element, 0.0))
        return padded.result

    def broadcast(self, vector, sizes: list, dims: list[int], name: str | None = None):
        """``vector`` repeated along the dimensions ``dims`` of a tensor of ``sizes``."""
        with self.named(name):
            return self.linalg.broadcast(vector, outs=[self.tensor.empty(sizes, self.element)], dimensions=dims).results[0]

    def broadcast_rows(self, vector, rows: list, name: str | None = None):
        return self.broadcast(vector, [*rows, self.width(vector)], list(range(len(rows))), name)

    def permute_units(self, value, positions: list[int], width: int):
        """``out[..., i] = value[..., positions[i]]`` (the table read as an operand at ``i``)."""

        def body(position):
            return self.tensor.extract(value, [self.loop_index(0), self.loop_index(1), self.as_index(position)])

        return self.generic([(self.index_table(positions), [2])], [self.batch, self.time, width], ["parallel"] * 3, body)

    # --- constants --------------------------------------------------------------------------------------
    def constant(self, name: str, array: np.ndarray):
        """A constant tensor of the element type: the float64 weights cast as the dtype holds them,
        kept as a named blob (``dense_resource``, one per name) at the end of the module's text."""
        ir = self.ir
        data = np.ascontiguousarray(array, dtype=NUMPY_DTYPES[self.dtype])
        if name not in self.resources:
            self.resources[name] = (data, ir.DenseResourceElementsAttr.get_from_buffer(memoryview(data), name, self.type(data.shape)))
        held, attribute = self.resources[name]
        assert np.array_equal(held, data), f"two weights named {name}"
        with self.named(name):
            return self.arith.ConstantOp(self.type(data.shape), attribute).result

    def index_table(self, values: Sequence[int]):
        """A constant table of positions, as ``i32`` (``as_index`` converts an entry): IREE 3.13
        crashes on constant tensors of ``index`` that are not splats."""
        return self.arith.constant(self.ir.RankedTensorType.get([len(values)], self.ir.IntegerType.get_signless(32)),
                                   self.ir.DenseElementsAttr.get(np.asarray(values, dtype=np.int32)))

    def as_index(self, entry):
        return self.arith.index_cast(self.index, entry)

    def constant_index(self, value: int):
        return self.arith.constant(self.index, value)

    @contextmanager
    def named(self, name: str | None) -> Iterator[None]:
        """Ops made inside get ``name`` as their location, which the printer uses as SSA name."""
        if name is None:
            yield
            return
        with self.ir.Location.name(name):
            yield
