"""Name scopes of the elaborator, and the values that live only at compile time: functions.

Scopes nest lexically. A *barrier* scope (a file's top level, one call of a function) starts a fresh
namespace for single assignment: inside it a name may be bound once, and a name bound outside it
may be shadowed (a function parameter may be called ``x`` even though the program's input is ``x``).
Loop bodies, comprehensions and state updates are scopes within their function: what they bind is
local to one iteration, and they may not rebind a name of their function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Union

from lsrl import tree as t
from lsrl.ir.graph import Loc


@dataclass
class Binding:
    value: object
    loc: Optional[Loc]


@dataclass
class Scope:
    parent: Optional["Scope"]
    barrier: bool = False
    # set on a file's top-level scope: the file, and whether it was imported (imports may only
    # define functions and compile-time values)
    file: Optional[str] = None
    imported: bool = False
    names: dict[str, Binding] = field(default_factory=dict)

    def lookup(self, name: str) -> Optional[Binding]:
        scope: Optional[Scope] = self
        while scope is not None:
            binding = scope.names.get(name)
            if binding is not None:
                return binding
            scope = scope.parent
        return None

    def local(self, name: str) -> Optional[Binding]:
        """The binding of ``name`` in this scope's namespace (up to and including its barrier)."""
        for scope in self._namespace():
            binding = scope.names.get(name)
            if binding is not None:
                return binding
        return None

    def namespace_root(self) -> "Scope":
        *_, root = self._namespace()
        return root

    def _namespace(self) -> Iterator["Scope"]:
        scope: Optional[Scope] = self
        while scope is not None:
            yield scope
            if scope.barrier:
                return
            scope = scope.parent

    def bind(self, name: str, value: object, loc: Optional[Loc]) -> None:
        self.names[name] = Binding(value, loc)

    def chain(self) -> list["Scope"]:
        """This scope and its ancestors, innermost first."""
        out = []
        scope: Optional[Scope] = self
        while scope is not None:
            out.append(scope)
            scope = scope.parent
        return out

    def visible_names(self) -> set[str]:
        return {name for scope in self.chain() for name in scope.names}


@dataclass(eq=False)
class Function:
    """A ``def``: inlined at every call, in a fresh scope whose parent is where it was defined."""

    name: str
    params: tuple[t.Parameter, ...]
    defaults: dict[str, object]
    body: Union[t.Expr, t.Block]
    closure: Scope
    loc: Loc

    description = "a function"
