"""Sparse weight matrices with exact (mpq) or float entries.

Program weights are mostly zeros and small rationals, so a matrix keeps only its non-zero entries,
row by row. Dense float64 copies are made once, on demand, for the numeric interpreter and backends.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from lsrl.ir.numbers import ONE, ZERO, Number, add, is_exact, mul, number, same_number


class Matrix:
    """An immutable ``rows x cols`` matrix holding only its non-zero entries."""

    __slots__ = ("rows", "cols", "_entries", "_row_items", "_dense")

    def __init__(self, rows: int, cols: int, entries: dict[tuple[int, int], Number] | None = None):
        self.rows = rows
        self.cols = cols
        cleaned: dict[tuple[int, int], Number] = {}
        for (i, j), value in (entries or {}).items():
            if not (0 <= i < rows and 0 <= j < cols):
                raise IndexError(f"entry ({i}, {j}) outside a {rows}x{cols} matrix")
            value = number(value)
            if value != 0:
                cleaned[(i, j)] = value
        self._entries = cleaned
        self._row_items: list[list[tuple[int, Number]]] | None = None
        self._dense: np.ndarray | None = None

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[object]]) -> "Matrix":
        n_cols = len(rows[0]) if rows else 0
        if any(len(r) != n_cols for r in rows):
            raise ValueError("matrix rows have different lengths")
        return cls(len(rows), n_cols, {(i, j): v for i, r in enumerate(rows) for j, v in enumerate(r)})

    @classmethod
    def eye(cls, n: int, scale: object = ONE) -> "Matrix":
        return cls(n, n, {(i, i): scale for i in range(n)})

    @classmethod
    def zeros(cls, rows: int, cols: int) -> "Matrix":
        return cls(rows, cols)

    @classmethod
    def ones(cls, rows: int, cols: int) -> "Matrix":
        return cls(rows, cols, {(i, j): ONE for i in range(rows) for j in range(cols)})

    @classmethod
    def diag(cls, values: Sequence[object]) -> "Matrix":
        return cls(len(values), len(values), {(i, i): v for i, v in enumerate(values)})

    @classmethod
    def selection(cls, rows: int, cols: int, pairs: Iterable[tuple[int, int]]) -> "Matrix":
        """A 0/1 matrix with ones at the given (row, col) positions."""
        return cls(rows, cols, {pair: ONE for pair in pairs})

    # --- inspection ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def entries(self) -> dict[tuple[int, int], Number]:
        return self._entries

    @property
    def nnz(self) -> int:
        return len(self._entries)

    @property
    def exact(self) -> bool:
        return all(is_exact(v) for v in self._entries.values())

    def row_items(self) -> list[list[tuple[int, Number]]]:
        """For each row, its non-zero (column, value) pairs in column order."""
        if self._row_items is None:
            rows: list[list[tuple[int, Number]]] = [[] for _ in range(self.rows)]
            for (i, j), v in sorted(self._entries.items()):
                rows[i].append((j, v))
            self._row_items = rows
        return self._row_items

    def dense(self) -> np.ndarray:
        """A read-only float64 copy."""
        if self._dense is None:
            dense = np.zeros((self.rows, self.cols))
            for (i, j), v in self._entries.items():
                dense[i, j] = float(v)
            dense.flags.writeable = False
            self._dense = dense
        return self._dense

    def to_rows(self) -> list[list[Number]]:
        out: list[list[Number]] = [[number(0)] * self.cols for _ in range(self.rows)]
        for (i, j), v in self._entries.items():
            out[i][j] = v
        return out

    def coupled_groups(self) -> list[list[int]]:
        """The indices of a square matrix, grouped so that no entry connects two groups (the connected
        components of its non-zero pattern): each group in increasing order, groups by their first
        index. A linear recurrence with this transition evolves each group on its own."""
        group = list(range(self.rows))  # union-find

        def root(i: int) -> int:
            while group[i] != i:
                group[i] = group[group[i]]
                i = group[i]
            return i

        for i, j in self._entries:
            group[root(i)] = root(j)
        members: dict[int, list[int]] = {}
        for i in range(self.rows):
            members.setdefault(root(i), []).append(i)
        return list(members.values())

    def is_diagonal(self) -> bool:
        return self.rows == self.cols and all(i == j for i, j in self._entries)

    def diagonal(self) -> tuple:
        """The diagonal entries (of a square matrix)."""
        return tuple(self._entries.get((i, i), ZERO) for i in range(self.rows))

    def is_identity(self) -> bool:
        return self.rows == self.cols and self.nnz == self.rows and all(
            i == j and v == 1 for (i, j), v in self._entries.items()
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Matrix) or self.shape != other.shape:
            return False
        if self._entries.keys() != other._entries.keys():
            return False
        return all(same_number(v, other._entries[k]) for k, v in self._entries.items())

    def __hash__(self) -> int:
        return hash((self.shape, frozenset(self._entries.items())))

    def __repr__(self) -> str:
        return f"Matrix({self.rows}x{self.cols}, nnz={self.nnz})"

    # --- algebra (exact where both sides are exact) -----------------------------------------------
    def __matmul__(self, other: "Matrix") -> "Matrix":
        if self.cols != other.rows:
            raise ValueError(f"cannot multiply {self.rows}x{self.cols} by {other.rows}x{other.cols}")
        other_rows = other.row_items()
        out: dict[tuple[int, int], Number] = {}
        for i, row in enumerate(self.row_items()):
            for k, a in row:
                for j, b in other_rows[k]:
                    out[(i, j)] = add(out.get((i, j), ZERO), mul(a, b))
        return Matrix(self.rows, other.cols, out)

    def __add__(self, other: "Matrix") -> "Matrix":
        if self.shape != other.shape:
            raise ValueError(f"cannot add {self.shape} and {other.shape} matrices")
        out = dict(self._entries)
        for key, v in other._entries.items():
            out[key] = add(out[key], v) if key in out else v
        return Matrix(self.rows, self.cols, out)

    def scaled(self, factor: Number) -> "Matrix":
        return Matrix(self.rows, self.cols, {k: mul(v, factor) for k, v in self._entries.items()})

    def apply(self, vector: Sequence[Number]) -> list[Number]:
        """Matrix-vector product on a vector of IR numbers."""
        out: list[Number] = []
        for row in self.row_items():
            total: Number = number(0)
            for j, v in row:
                total = add(total, mul(v, vector[j]))
            out.append(total)
        return out
