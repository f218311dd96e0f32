"""Sending a decorated function to another process by reference.

pickle sends a function as "module.qualname" and checks that this name finds
the same object. Under ``@async_wrap(executor=ProcessExecutor())`` it never
does: the module's attribute is the async wrapper, and the function to run is
the original behind its ``__wrapped__``. So plain pickle refuses the very
pattern the documentation shows, on every install without cloudpickle (and
the stdlib ``ProcessPoolExecutor`` refuses it the same way).

:func:`function_reference` returns, for such a function, a small picklable
:class:`FunctionReference`: the name, and how many ``__wrapped__`` steps lead
from what the name finds to the function. The worker imports the module,
looks the name up and takes those steps. Module-level functions, methods and
staticmethods of module-level classes work this way; functions without an
importable name (lambdas, closures) are left to pickle or cloudpickle, which
say so.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["FunctionReference", "function_reference"]

_MAX_WRAPPERS = 16  # __wrapped__ steps followed at most: a chain longer than this is surely a loop


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module)
    if obj is None:
        obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class FunctionReference:
    """A function named ``module.qualname``, ``unwrap`` ``__wrapped__`` steps behind what that name finds."""

    __slots__ = ("module", "qualname", "unwrap")

    def __init__(self, module: str, qualname: str, unwrap: int) -> None:
        self.module = module
        self.qualname = qualname
        self.unwrap = unwrap

    def __reduce__(self) -> tuple[Any, ...]:
        return (FunctionReference, (self.module, self.qualname, self.unwrap))

    def __repr__(self) -> str:
        return f"{self.module}.{self.qualname}"

    def resolve(self) -> Any:
        """The function itself, found from its name: in the process that runs it."""
        obj = _lookup(self.module, self.qualname)
        for _ in range(self.unwrap):
            obj = obj.__wrapped__
        return obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


def function_reference(fn: Any) -> Any:
    """``fn`` itself, or a :class:`FunctionReference` when its name finds a wrapper of it rather than it.

    Cheap enough for every call sent to another process: one attribute lookup
    per dotted part of the name.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return fn  # no importable name (a lambda, a closure, a partial): for pickle or cloudpickle
    try:
        found = _lookup(module, qualname) if module in sys.modules else None
    except AttributeError:
        return fn
    if found is None or found is fn:
        return fn
    obj = found
    for steps in range(1, _MAX_WRAPPERS + 1):
        obj = getattr(obj, "__wrapped__", None)
        if obj is None:
            return fn
        if obj is fn:
            return FunctionReference(module, qualname, steps)
    return fn
