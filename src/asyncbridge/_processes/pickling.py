"""What crosses the pipes, from the parent's side: calls pickled in the caller's thread, replies unpickled.

A call is pickled before any worker is involved, so a pickling error is raised
at once, in the caller, naming what failed (the function, which argument), at
no cost to the pool. Functions defined in an interactive ``__main__``, and
anything plain pickle refuses, go by value with cloudpickle when it is
installed. A reply becomes the call's result, or the exception the worker
raised with the worker's traceback attached as its cause.
"""

from __future__ import annotations

import functools
import importlib
import os
import pickle
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from .._call import Call
from .framing import PROTOCOL, RAISED, RESULT
from .worker import LazyMain, import_cloudpickle, process_chunk, type_name
from .worker import __name__ as worker_module_name

__all__ = [
    "MapChunk",
    "call_pieces",
    "chunk_error",
    "chunk_pieces",
    "describe_function",
    "dumps",
    "main_reference",
    "set_outcome",
    "with_remote_traceback",
]

_cloudpickle_module: Any = None
_cloudpickle_checked = False


def _cloudpickle() -> Any:
    """The cloudpickle module if it is installed, else None (looked up once)."""
    global _cloudpickle_module, _cloudpickle_checked
    if not _cloudpickle_checked:
        _cloudpickle_module = import_cloudpickle()
        _cloudpickle_checked = True
    return _cloudpickle_module


def describe_function(fn: object) -> str:
    """``fn`` as error messages name it: ``qualname()``, else its repr."""
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return f"{name}()"
    return repr(fn)


def _main_is_interactive() -> bool:
    main = sys.modules.get("__main__")
    if isinstance(main, LazyMain):
        return False
    return main is None or (getattr(main, "__file__", None) is None and getattr(main, "__spec__", None) is None)


def dumps(obj: object, pieces: Callable[[], list[tuple[str, object]]], fn: object) -> bytes:
    """Pickle ``obj`` for a worker; on failure raise a TypeError or PicklingError naming the culprit.

    ``pieces`` lists the parts of ``obj`` with a name for each; they are
    pickled one by one only after a failure, to find the one to blame, so the
    common path is a single ``pickle.dumps``.
    """
    error: Exception | None = None
    by_value = getattr(fn, "__module__", None) == "__main__" and _main_is_interactive()
    if not by_value:
        try:
            return pickle.dumps(obj, PROTOCOL)
        except Exception as exc:
            error = exc
    cloudpickle = _cloudpickle()
    if cloudpickle is not None:
        try:
            data: bytes = cloudpickle.dumps(obj, PROTOCOL)
        except Exception as exc:
            error = exc
        else:
            return data
    elif by_value:
        raise pickle.PicklingError(
            f"cannot send the function {describe_function(fn)} to a worker process: it was defined in "
            "an interactive session, so a worker cannot import it by name; define it in a module, "
            "or install cloudpickle (pip install cloudpickle) to send it by value"
        )
    assert error is not None
    raise _pickling_error(pieces(), error, cloudpickle) from error


def _pickling_error(pieces: list[tuple[str, object]], error: Exception, cloudpickle: Any) -> Exception:
    culprit: object = None
    label = "the call"  # if each piece pickles alone but not all together: blame the whole
    for piece_label, piece in pieces:
        try:
            if cloudpickle is None:
                pickle.dumps(piece, PROTOCOL)
            else:
                cloudpickle.dumps(piece, PROTOCOL)
        except Exception:
            culprit, label = piece, piece_label
            break
    if culprit is not None and not isinstance(culprit, types.FunctionType):
        label += f" (a {type_name(culprit)})"
    by_name = isinstance(culprit, types.FunctionType) and cloudpickle is None
    hint = ""
    if by_name:
        hint = (
            "; only functions importable by name can be sent (not lambdas, closures or functions "
            "defined inside functions): define it at module level, or install cloudpickle "
            "(pip install cloudpickle) to send it by value"
        )
    kind = pickle.PicklingError if by_name or isinstance(error, pickle.PicklingError) else TypeError
    return kind(f"cannot send {label} to a worker process: {type(error).__name__}: {error}{hint}")


def call_pieces(fn: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, object]]:
    """The parts of the call ``fn(*args, **kwargs)``, each with the name an error gives it (see :func:`dumps`)."""
    pieces: list[tuple[str, object]] = [(f"the function {describe_function(fn)}", fn)]
    pieces += [(f"positional argument {i}", arg) for i, arg in enumerate(args)]
    pieces += [(f"keyword argument {name!r}", arg) for name, arg in kwargs.items()]
    return pieces


def chunk_pieces(fn: object, chunk: Sequence[tuple[Any, ...]]) -> list[tuple[str, object]]:
    """The parts of a chunk of ``map(fn, ...)``, each with the name an error gives it (see :func:`dumps`)."""
    pieces: list[tuple[str, object]] = [(f"the function {describe_function(fn)}", fn)]
    pieces += [(f"argument {i} of a map() item", arg) for args in chunk for i, arg in enumerate(args)]
    return pieces


class _WorkerModule:
    """Unpickles as the module :mod:`.worker`, found in ``sys.modules`` in a worker without importing asyncbridge.

    (Pickling a function of that module by name would import the asyncbridge
    package in the worker: ``__import__`` loads a module's parents.)
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (importlib.import_module, (worker_module_name,))


class _ProcessChunk:
    """Unpickles as :func:`.worker.process_chunk`."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (getattr, (_WorkerModule(), "process_chunk"))


class MapChunk:
    """The function ``map(fn, ..., chunksize=n)`` sends with each chunk: ``fn`` over the chunk's items.

    Calling it runs :func:`.worker.process_chunk` (as a worker does); it
    unpickles in the worker as that function with ``fn`` bound.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, chunk: Sequence[tuple[Any, ...]]) -> tuple[list[Any], bytes | None]:
        return process_chunk(self.fn, chunk)

    def __reduce__(self) -> tuple[Any, ...]:
        return (functools.partial, (_ProcessChunk(), self.fn))

    def __repr__(self) -> str:
        return f"a chunk of map({describe_function(self.fn)}, ...)"


def chunk_error(fn: object, data: bytes) -> BaseException:
    """The exception a call of a map() chunk raised, from the reply :func:`.worker.process_chunk` made of it."""
    try:
        _, remote_exc, text, description = pickle.loads(data)
    except Exception as exc:  # e.g. its class cannot be imported here
        error = pickle.UnpicklingError(
            f"the exception {describe_function(fn)} raised in a worker process could not be "
            f"unpickled: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = exc
        return error
    return with_remote_traceback(remote_exc, text, description)


def main_reference() -> tuple[str, str] | None:
    """How a worker can import the parent's ``__main__`` when a call needs it (as spawn does)."""
    main = sys.modules.get("__main__")
    if main is None:
        return None
    if isinstance(main, LazyMain):
        return main.asyncbridge_main_reference
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name != "__main__":
        return ("name", name)
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and os.path.exists(path):
        return ("path", os.path.abspath(path))
    return None


# -- replies ---------------------------------------------------------------------


class _RemoteTraceback(Exception):
    """The worker's traceback, set as ``__cause__`` of an exception raised in a worker."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def with_remote_traceback(exc: BaseException | None, text: str, description: str) -> BaseException:
    """The exception a worker sent back, its traceback attached as the cause (as the stdlib does)."""
    if exc is None:  # it could not cross: a stand-in that says what it was
        exc = RuntimeError(f"the worker process raised {description}")
    exc.__cause__ = _RemoteTraceback(text)
    return exc


def set_outcome(
    call: Call,
    pid: int,
    frame: bytearray,
    message: tuple[Any, ...] | None = None,
    unpickling_error: Exception | None = None,
) -> int:
    """Set the outcome of ``call`` from worker ``pid``'s reply (decoded here unless ``message``); return its kind."""
    if message is None:
        decoded: tuple[Any, ...] = ()
        try:
            decoded = pickle.loads(frame)
        except Exception as exc:  # e.g. the result's class cannot be imported here
            unpickling_error = exc
        message = decoded
    kind: int = message[0] if message else -1
    if kind == RESULT:
        call.result = message[1]
    elif kind == RAISED:
        _, remote_exc, text, description = message
        call.exc = with_remote_traceback(remote_exc, text, description)
    else:
        error = pickle.UnpicklingError(
            f"the reply of worker process {pid} to {describe_function(call.fn)} could not be "
            f"unpickled: {type(unpickling_error).__name__}: {unpickling_error}"
        )
        error.__cause__ = unpickling_error
        call.exc = error
    return kind
