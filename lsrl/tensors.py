"""``load(path, name)``: a tensor of a safetensors file as a compile-time value.

A trained layer's weights become the program's constants: a 0-d tensor is a number, a 1-d one a
vector, a 2-d one a matrix. Every float that a file can hold is a binary fraction, so the values are
read exactly (exact mode computes with them as they are), and a program can write a real layer once
in ``.lsrl`` and run it on every backend. The path is relative to the file that calls ``load``.
"""

from __future__ import annotations

import os

import numpy as np
from gmpy2 import mpq

from lsrl import compiletime as ct
from lsrl.errors import LsrlError
from lsrl.ir.graph import Loc
from lsrl.ir.matrix import Matrix


def load_tensor(path: str, name: str, path_loc: Loc, name_loc: Loc) -> object:
    """Tensor ``name`` of the safetensors file ``path`` (relative to the calling file)."""
    from safetensors import SafetensorError, safe_open

    shown = os.path.normpath(os.path.join(os.path.dirname(path_loc.file), path))
    try:
        with safe_open(shown, framework="numpy") as f:
            names = sorted(f.keys())
            if name not in names:
                listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise LsrlError(f"\"{shown}\" has no tensor '{name}' (it has: {listed or 'none'})", name_loc)
            array = f.get_tensor(name)
    except (OSError, SafetensorError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise LsrlError(f"cannot read \"{shown}\" as a safetensors file: {reason}", path_loc) from None
    return _value(array, f"tensor '{name}' of \"{shown}\"", name_loc)


def _value(array: np.ndarray, what: str, loc: Loc) -> object:
    if array.dtype.kind not in "fiub":
        raise LsrlError(f"{what} holds {array.dtype} values, not numbers", loc)
    if array.ndim > 2:
        raise LsrlError(f"{what} has shape {list(array.shape)}: load reads numbers, vectors and matrices", loc)
    try:
        ct.check_length(array.size, f"{what}: a tensor")
    except LsrlError as e:
        raise LsrlError(e.message, loc) from None
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise LsrlError(f"{what} holds values that are not finite numbers", loc)
    exact = [mpq(float(v)) for v in values.ravel()]  # a float is a binary fraction: read exactly
    if array.ndim == 0:
        return exact[0]
    if array.ndim == 1:
        return tuple(exact)
    rows, cols = array.shape
    return Matrix.from_rows([exact[r * cols:(r + 1) * cols] for r in range(rows)])
