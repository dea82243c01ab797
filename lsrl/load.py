"""Compiling .lsrl programs from Python: source text or a file to a verified program graph.

    graph = lsrl.compile_file("examples/more_ones.lsrl")
    graph = lsrl.compile_source(text, "prog.lsrl", params={"seq_len": 3})

Mistakes in the program raise ``LsrlError`` with the location they point at; render them with
``lsrl.diagnostics.render``. Passing a ``sources`` dict collects the text of every file read (the
program and its imports), which is what the renderer needs to quote the offending line.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from os import PathLike
from typing import Iterator, Mapping, Optional

from lsrl.elaborate import Elaborator
from lsrl.errors import LsrlError, read_user_file
from lsrl.ir.graph import Graph, Loc

# Parsing and elaboration recurse once per nesting level, so a chain of a few thousand terms
# (a + b + ...) outgrows Python's default limit of 1000 frames; 10000 still fits the C stack, and
# a program nested deeper still is reported as a diagnostic.
RECURSION_LIMIT = 10_000


def compile_source(
    text: str,
    filename: str = "<string>",
    params: Optional[Mapping[str, object]] = None,
    sources: Optional[dict[str, str]] = None,
) -> Graph:
    """Compile program text; ``filename`` is used in locations and to resolve relative imports."""
    elaborator = Elaborator(params, sources)
    try:
        with _recursion_limit():
            return elaborator.elaborate(text, filename)
    except RecursionError:
        where = elaborator.program.loc or Loc(filename, 1, 1)
        raise LsrlError("the program nests too deeply to compile (thousands of levels)", where) from None


def compile_file(
    path: str | PathLike[str],
    params: Optional[Mapping[str, object]] = None,
    sources: Optional[dict[str, str]] = None,
) -> Graph:
    """Read and compile a .lsrl file."""
    name = str(path)
    return compile_source(read_user_file(name, ""), name, params, sources)


@contextmanager
def _recursion_limit() -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, RECURSION_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)
