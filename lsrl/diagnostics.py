"""Rendering errors and warnings for people: ``FILE:LINE:COL: error: MESSAGE`` (or ``warning:``),
the source line and a caret.

One without a location (a bad option, an unknown parameter) renders as ``lsrl: error: MESSAGE``.
"""

from __future__ import annotations

from typing import Mapping, Optional

from lsrl.errors import CompileWarning, LsrlError

PROGRAM = "lsrl"


def render(diagnostic: LsrlError | CompileWarning, sources: Optional[Mapping[str, str]] = None) -> str:
    """The full diagnostic, ending in a newline. ``sources`` maps file names to their text; a file
    not in it is read from disk, and a file that cannot be read is shown without its line."""
    severity = "warning" if isinstance(diagnostic, CompileWarning) else "error"
    loc = diagnostic.loc
    if loc is None:
        return f"{PROGRAM}: {severity}: {diagnostic.message}\n"
    out = f"{loc}: {severity}: {diagnostic.message}\n"
    line = _source_line(loc.file, loc.line, sources or {})
    if line is not None:
        # keep the line's tabs in the caret line so the caret sits under the right character
        prefix = "".join(c if c == "\t" else " " for c in line[: max(loc.col - 1, 0)])
        out += f"{line}\n{prefix}^\n"
    return out


def _source_line(file: str, line: int, sources: Mapping[str, str]) -> Optional[str]:
    text = sources.get(file)
    if text is None:
        try:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return None
    lines = text.split("\n")  # as the lexer counts lines
    if not 1 <= line <= len(lines):
        return None
    return lines[line - 1].rstrip("\r")
