"""``load(path, name)``: tensors of safetensors files as compile-time values, read exactly, with
mistakes reported at the call."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lsrl.ir.interpret import run
from safetensors.numpy import save_file

from lsrl.errors import LsrlError
from lsrl.load import compile_file

WEIGHTS = {
    "in_proj.weight": np.array([[0.5, -1.25], [3.0, 0.1]], dtype=np.float32),
    "bias": np.array([1.5, -2.0]),
    "scale": np.array(0.25),
    "cube": np.zeros((2, 2, 2)),
    "names": np.array([1, 2], dtype=np.int64),
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "weights").mkdir()
    save_file(WEIGHTS, str(tmp_path / "weights" / "layer.safetensors"))
    return tmp_path


def program(folder: Path, text: str) -> Path:
    path = folder / "prog.lsrl"
    path.write_text(text)
    return path


def test_numbers_vectors_and_matrices_are_read_exactly(folder: Path) -> None:
    path = program(folder, 'param W = load("weights/layer.safetensors", "in_proj.weight")\n'
                           'input x[2]\noutput W @ x + load("weights/layer.safetensors", "bias") * '
                           'load("weights/layer.safetensors", "scale")\n')
    got = run(compile_file(path), [[1, 2]], exact=True)[0, 0].tolist()
    tenth = Fraction(float(np.float32(0.1)))  # the float32 nearest 1/10, exactly
    assert got == [Fraction(1, 2) - Fraction(5, 2) + Fraction(3, 8), 3 + 2 * tenth - Fraction(1, 2)]


@pytest.mark.parametrize("call, message, column", [
    ('load("weights/layer.safetensors", "nope")', "has no tensor 'nope' (it has: bias, cube, in_proj.weight, names, scale)", 42),
    ('load("weights/missing.safetensors", "bias")', "cannot read", 13),
    ('load("prog.lsrl", "bias")', "as a safetensors file", 13),
    ('load("weights/layer.safetensors", "cube")', "has shape [2, 2, 2]: load reads numbers, vectors and matrices", 42),
    ('load("weights/layer.safetensors", 3)', "load needs a tensor name (a string), got", 42),
])
def test_mistakes_are_reported_at_the_call(folder: Path, call: str, message: str, column: int) -> None:
    path = program(folder, f"input x[2]\noutput {call} * x[0]\n")
    with pytest.raises(LsrlError) as e:
        compile_file(path)
    assert message in e.value.message and (e.value.loc.line, e.value.loc.col) == (2, column)


def test_integer_tensors_are_numbers_too(folder: Path) -> None:
    path = program(folder, 'input x[2]\noutput load("weights/layer.safetensors", "names") * x\n')
    assert run(compile_file(path), [[3, 4]], exact=True)[0, 0].tolist() == [3, 8]
