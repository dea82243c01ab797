"""What the compiler tells a user: errors that stop it, warnings that do not.

Both carry the source location they point at, where one is known. They live at the bottom of the
pipeline so that every stage (the front end, a pass, a target) can report a user's problem the
same way; ``lsrl.diagnostics`` renders them as ``FILE:LINE:COL: error: MESSAGE`` with a caret.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsrl.ir.graph import Loc


class LsrlError(Exception):
    """A mistake in a user's program, options or data, or a program a target cannot compute as
    asked (never an internal failure)."""

    def __init__(self, message: str, loc: Loc | None = None, node: int | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        # A target sees only the layered model: it names the program node (``UnitLabel.node``)
        # and the driver, which holds the program graph, fills in ``loc`` from it.
        self.node = node

    def __str__(self) -> str:
        return f"{self.loc}: error: {self.message}" if self.loc else f"error: {self.message}"


@dataclass(frozen=True)
class CompileWarning:
    """Something the user should know about a compiled model that does not stop the compiler,
    for example a constant too large for float32."""

    message: str
    loc: Loc | None = None
    node: int | None = None  # as for LsrlError: the driver fills in ``loc`` from the program node
    dtype: str | None = None  # the one dtype the warning is about (None: every dtype)

    def __str__(self) -> str:
        return f"{self.loc}: warning: {self.message}" if self.loc else f"warning: {self.message}"
