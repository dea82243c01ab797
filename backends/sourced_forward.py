"""The body of ``forward`` of the ``jax`` and ``torch`` targets: every unit followed to the array
it was computed in.

Most units of a layered model only pass a value on: a carried value, the operands of heads (the
units of a ``matrix`` or ``delta`` layer that hold a head's decay, key, value and query), the
identity units of a map layer, the readout that picks the heads' reads. Written as the other
targets write them (each layer's ``W x + b`` as an array, its columns picked by index lists), XLA
on the CPU runs every pick as a gather over ``[batch, time, width]`` arrays, many times slower than
the recurrence it feeds, and PyTorch's gathers took a third of its forward's time
(benchmarks/gated_layers.py). Here a unit whose row of ``W`` is one weight 1 and no bias is not
computed at all: it is known as a column of the array that computed it (its *source*), and a layer reads its operands from those arrays as slices; the operands of a group of
heads laid out at a constant stride (head-major blocks) are one slice and a reshape. Arrays are
made only where something is computed: a function of a map layer, a ReLU, a gate, a matrix
product, the heads' outputs, and the output of ``forward``. Layers whose arithmetic mixes their
units (``state``, ``gated``, ``solve``) and layers with a matrix product get their input as one
array and run as in every other target (``codegen.layer_lines``). The few spellings that differ
(zeros, reversing, index arrays) are the target's ``codegen.Syntax``.

The torch target's ``forward`` runs this body where no ``tap`` is given; a tap sees every unit of
every layer, so with one ``forward`` runs layer by layer (``codegen.forward_lines``).
"""

from __future__ import annotations

import re
from typing import NamedTuple, Sequence

from lsrl.backends import codegen, head_code, mesa_code
from lsrl.ir.heads import STATE_HEADS
from lsrl.ir.layered import IDENTITY, Layer, LayeredModel
from lsrl.ir.schedule import RECURRENT, Plan

# A pick is joined from slices where its units form runs of at least MIN_RUN units on average, in
# at most MAX_PIECES pieces; otherwise it is one gather (on the table's small programs, many short
# slices ran no faster and compiled slower)
MIN_RUN = 4
MAX_PIECES = 32


class Source(NamedTuple):
    """Where a unit's value is: column ``column`` of the generated array ``array``."""

    array: str
    column: int


Sources = Sequence["Source | None"]  # per unit; None: the unit is 0


class _Run(NamedTuple):
    array: str | None  # None: a run of zeros
    first: int
    count: int
    step: int = 1  # 1: columns first, first + 1, ...; -1: first, first - 1, ...


def _runs(sources: Sources) -> list[_Run]:
    """The sources as runs of consecutive columns of one array, up or down (or of zeros)."""
    runs: list[_Run] = []
    for source in sources:
        last = runs[-1] if runs else None
        if source is None:
            if last and last.array is None:
                runs[-1] = last._replace(count=last.count + 1)
            else:
                runs.append(_Run(None, 0, 1))
        elif last and last.array == source.array and last.first + last.step * last.count == source.column:
            runs[-1] = last._replace(count=last.count + 1)
        elif last and last.array == source.array and last.count == 1 and last.first - 1 == source.column:
            runs[-1] = last._replace(count=2, step=-1)
        else:
            runs.append(_Run(source.array, source.column, 1))
    return runs


class Picks:
    """Expressions of units given by their sources, in the arrays of ``widths`` (name -> width;
    every array is ``[batch, time, width]``, as the array ``x`` that ``forward`` always holds)."""

    def __init__(self, widths: dict[str, int], syntax: codegen.Syntax):
        self.widths, self.syntax = widths, syntax

    def pick(self, sources: Sources, heads: int | None = None) -> str:
        """An expression of the units' values: ``[..., len(sources)]``, or ``[..., heads, n]`` (the
        units head by head) where ``heads`` is given."""
        runs = _runs(sources)
        grid = self._strided(runs, heads)
        if grid is not None:
            return grid
        if len(runs) > min(MAX_PIECES, max(1, len(sources) // MIN_RUN)):
            value = self._gathered(sources)
        else:
            value = self.syntax.concat([self._run(run) for run in runs])
        return value if heads is None else f"{value}.reshape(*x.shape[:-1], {heads}, {len(sources) // heads})"

    def _run(self, run: _Run) -> str:
        if run.array is None:
            return self.syntax.zeros(f"*x.shape[:-1], {run.count}")
        if run.step < 0:
            return self.syntax.reverse(f"{run.array}[..., {run.first - run.count + 1}:{run.first + 1}]")
        if run.first == 0 and run.count == self.widths[run.array]:
            return run.array
        return f"{run.array}[..., {run.first}:{run.first + run.count}]"

    def _strided(self, runs: list[_Run], heads: int | None) -> str | None:
        """Equal runs of one array at a constant stride (one per head where ``heads`` is given) as a
        slice of the array reshaped to ``[..., runs, stride]`` and a slice of that; None where the
        runs are not so laid out."""
        array, count = runs[0].array, runs[0].count
        if array is None or any(run.array != array or run.count != count or run.step != 1 for run in runs):
            return None
        if len(runs) == 1:  # one block (the heads' blocks following each other)
            if heads is None:
                return self._run(runs[0])
            return f"{self._run(runs[0])}.reshape(*x.shape[:-1], {heads}, {count // heads})"
        if heads is not None and len(runs) != heads:
            return None
        stride = runs[1].first - runs[0].first
        if stride <= 0 or any(b.first - a.first != stride for a, b in zip(runs, runs[1:])):
            return None
        block, offset = divmod(runs[0].first, stride)
        if offset + count > stride or (block + len(runs)) * stride > self.widths[array]:
            return None
        whole = _Run(array, block * stride, len(runs) * stride)
        value = f"{self._run(whole)}.reshape(*x.shape[:-1], {len(runs)}, {stride})[..., {offset}:{offset + count}]"
        return value if heads is not None else f"{value}.reshape(*x.shape[:-1], {len(runs) * count})"

    def _gathered(self, sources: Sources) -> str:
        """The units by one gather from the arrays they are in, joined (and a 0 column for zeros)."""
        arrays = list(dict.fromkeys(s.array for s in sources if s is not None))
        offsets, width = {}, 0
        for array in arrays:
            offsets[array], width = width, width + self.widths[array]
        parts = [*arrays, *([self.syntax.zeros("*x.shape[:-1], 1")] if None in sources else [])]
        positions = [width if s is None else offsets[s.array] + s.column for s in sources]
        return f"{self.syntax.concat(parts)}[..., {self.syntax.index_list(positions)}]"



class SourcedForward:
    """The lines of ``forward`` for one model, with the source of every unit of the layer being
    written (``self.sources``) and the width of every generated array (``self.picks.widths``)."""

    def __init__(self, model: LayeredModel, plan: Plan, syntax: codegen.Syntax):
        self.model, self.plan, self.syntax = model, plan, syntax
        self.picks = Picks({"x": model.d_in}, syntax)
        self.sources: list[Source | None] = [Source("x", j) for j in range(model.d_in)]
        self.lines: list[str] = []

    def array(self, name: str, value: str, width: int) -> list[Source]:
        """Bind ``name`` to ``value`` (``width`` units); its units' sources."""
        self.lines.append(f"{name} = {value}")
        self.picks.widths[name] = width
        return [Source(name, j) for j in range(width)]

    # --- the rows of a layer -------------------------------------------------------------------
    def rows_value(self, layer: Layer, rows: Sequence[int], heads: int | None = None, weight: str = "W",
                   bias: str = "b") -> str:
        """``(W x + b)`` at ``rows`` (of the layer's ``weight`` and ``bias``), each row read from
        the source of the one unit it weighs (``picks``), else from the layer's affine array."""
        matrix, offsets = layer.attrs[weight], layer.attrs[bias]
        items = matrix.row_items()
        if any(len(items[r]) > 1 for r in rows):
            return self.picks.pick([Source(f"u_{weight}", r) for r in rows], heads)
        columns = [items[r][0][0] if items[r] else None for r in rows]
        value = self.picks.pick([None if c is None else self.sources[c] for c in columns], heads)

        def shaped(units: list[int]) -> list:  # head by head: units h * n .. (h + 1) * n - 1
            n = len(units) // (heads or 1)
            return [units[h * n:(h + 1) * n] for h in range(heads)] if heads else units

        if any(items[r] and items[r][0][1] != 1 for r in rows):
            index = self.syntax.index_list
            at = f"{index(shaped(list(rows)))}, {index(shaped([c or 0 for c in columns]))}"
            value = f"{value} * {self.syntax.weight(weight)}[{at}]"
        if any(offsets[r] != 0 for r in rows):
            value = f"{value} + {self.syntax.weight(bias)}[{self.syntax.index_list(shaped(list(rows)))}]"
        return value

    def passed_on(self, layer: Layer) -> list[Source | None | bool]:
        """Per unit of the layer: its source where its row is one weight 1 and no bias (None for a
        zero row), else False (computed)."""
        items, offsets = layer.attrs["W"].row_items(), layer.attrs["b"]
        passed: list[Source | None | bool] = []
        for row, offset in zip(items, offsets):
            if offset != 0 or len(row) > 1 or (row and row[0][1] != 1):
                passed.append(False)
            else:
                passed.append(self.sources[row[0][0]] if row else None)
        return passed

    def affine_arrays(self, index: int, layer: Layer) -> None:
        """``u_W = W x + b`` (and ``u_W2``) as arrays where a row mixes units (a matrix product)."""
        for weight, bias in (("W", "b"), ("W2", "b2")):
            if weight in layer.attrs and any(len(row) > 1 for row in layer.attrs[weight].row_items()):
                w = self.syntax.weight
                self.array(f"u_{weight}", self.syntax.linear(self.input_array(), w(weight), w(bias)), layer.width)

    def input_array(self) -> str:
        """An array holding the current units in order: one made already, else ``x`` bound to them
        (at the start of a layer, before any of its lines)."""
        value = self.picks.pick(self.sources)
        if value.isidentifier():
            return value
        self.materialize()
        return "x"

    def materialize(self) -> None:
        """The current units as the array ``x`` (at the start of a layer, before any of its lines)."""
        value = self.picks.pick(self.sources)
        if value != "x":
            self.sources = self.array("x", value, len(self.sources))

    # --- layers --------------------------------------------------------------------------------
    def layer(self, index: int, layer: Layer) -> None:
        """The lines of layer ``index`` (none for a layer that only picks units)."""
        if layer.kind not in ("affine", "relu", "gate", "map", *STATE_HEADS):
            self.materialize()
            self.lines += codegen.layer_lines(self.model, index, self.plan, self.syntax)
            self.picks.widths["x"] = layer.width
            self.sources = [Source("x", j) for j in range(layer.width)]
            return
        self.lines.append(self.syntax.bind_layer(index))
        written = len(self.lines)
        self._layer(index, layer)
        bound = self.lines[written - 1].split("=")[0].strip()  # the name bind_layer binds
        if not any(re.search(rf"\b{bound}\b", line) for line in self.lines[written:]):
            self.lines.pop(written - 1)
        if len(self.lines) == written - 1:
            self.lines.append("# (only picks: its units are read where they were computed)")

    def _layer(self, index: int, layer: Layer) -> None:
        self.affine_arrays(index, layer)
        everything = range(layer.width)
        if layer.kind == "affine":
            passed = self.passed_on(layer)
            if all(p is not False for p in passed):
                self.sources = [p if p is not False else None for p in passed]
            else:
                self.sources = self.array(f"y{index}", self.rows_value(layer, everything), layer.width)
        elif layer.kind == "relu":
            self.sources = self.array(f"y{index}", self.syntax.relu(self.rows_value(layer, everything)), layer.width)
        elif layer.kind == "gate":
            gate = self.rows_value(layer, everything, weight="W2", bias="b2")
            value = f"({self.rows_value(layer, everything)}) * ({gate})"
            self.sources = self.array(f"y{index}", value, layer.width)
        elif layer.kind == "map":
            self._map(index, layer)
        else:
            self._heads(index, layer)

    def _map(self, index: int, layer: Layer) -> None:
        functions = layer.attrs["functions"]
        passed = self.passed_on(layer)
        sources: list[Source | None] = [None] * layer.width
        groups = {f: [u for u, g in enumerate(functions) if g == f] for f in dict.fromkeys(functions)}
        for function, units in groups.items():
            if function == IDENTITY:
                kept = [u for u in units if passed[u] is not False]
                for u in kept:
                    sources[u] = passed[u]  # type: ignore[assignment]
                units = [u for u in units if passed[u] is False]
                if not units:
                    continue
                value = self.rows_value(layer, units)
            else:
                value = self.syntax.function(function, self.rows_value(layer, units))
            made = self.array(f"y{index}_{function}", value, len(units))
            for u, source in zip(units, made):
                sources[u] = source
        self.sources = sources

    def _heads(self, index: int, layer: Layer) -> None:
        """Each group of heads of one shape through ``group_heads``, its operands read where they
        were computed; the units that pass operands on keep their sources."""
        plan = self.plan.of(index)
        form = f", {plan.form!r}, {plan.chunk}" if plan.form != RECURRENT else ""
        passed = self.passed_on(layer)
        sources: list[Source | None | bool] = list(passed)
        left_out = mesa_code.left_out(self.model, self.plan, index)
        for g, (operands, query, out, _) in enumerate(head_code.head_groups(layer, left_out)):
            heads, keys, values = len(out), len(operands[-2][0]), len(operands[-1][0])
            parts = [self.rows_value(layer, _flat(units), heads) for units in operands]
            q = self.rows_value(layer, _flat(query), heads) if query is not None else "None"
            start = self.syntax.zeros(f"x.shape[0], {heads}, {keys}, {values}")
            self.lines.append(f"emitted, _ = group_heads({layer.kind!r}, [{', '.join(parts)}], {q}, {start}{form})")
            emitted = self.array(f"y{index}_heads{g}", "emitted.reshape(*emitted.shape[:2], -1)", len(_flat(out)))
            for unit, source in zip(_flat(out), emitted):
                sources[unit] = source
        read = self._read_later(index)
        computed = [u for u, s in enumerate(sources) if s is False and (read is None or u in read)]
        if computed:
            made = self.array(f"y{index}", self.rows_value(layer, computed), len(computed))
            for u, source in zip(computed, made):
                sources[u] = source
        self.sources = [s if s is not False else None for s in sources]  # (the rest is read by none)

    def _read_later(self, index: int) -> set[int] | None:
        """The units of layer ``index`` that the next layer reads (None: all, the output)."""
        if index + 1 == len(self.model.layers):
            return None
        following = self.model.layers[index + 1].attrs
        return {c for weight in ("W", "W2") if weight in following for row in following[weight].row_items()
                for c, _ in row} | mesa_code.operands_read(self.model, self.plan, index)


def _flat(per_head: list[list[int]]) -> list[int]:
    return [unit for head in per_head for unit in head]


def forward_lines(model: LayeredModel, plan: Plan, syntax: codegen.Syntax) -> list[str]:
    """The body of ``forward`` without a tap: from ``x`` (``[batch, time, d_in]``) to ``x`` (the
    output), one commented block per layer."""
    writer = SourcedForward(model, plan, syntax)
    width = model.d_in
    for i, layer in enumerate(model.layers):
        writer.lines += codegen.layer_comment(i, layer, width) + codegen.plan_comment(i, layer, plan)
        writer.layer(i, layer)
        writer.lines.append("")
        width = layer.width
    writer.materialize()
    return writer.lines
