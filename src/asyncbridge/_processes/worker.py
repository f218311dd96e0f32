"""The half of ProcessExecutor that runs inside each worker process: its main loop.

Standard library only, and nothing from the rest of asyncbridge but
:mod:`.framing` (the wire format, standard library only too): the default
launcher loads these two files in a fresh interpreter *without* importing the
asyncbridge package (``import asyncbridge`` pulls in asyncio and costs more
than the whole rest of a worker's start), so a worker is ready in a few tens of
milliseconds. :mod:`.framing` describes what travels on the pipes.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import types

from .framing import PROTOCOL, RAISED, READY, RESULT, START_FAILED, read_frame, write_frame
from .framing import __file__ as framing_file

# typing is not imported at run time: it alone costs a worker a few milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = [
    "BOOTSTRAP",
    "LazyMain",
    "bootstrap_command",
    "import_cloudpickle",
    "importing_main",
    "process_chunk",
    "serve",
    "serve_connections",
    "type_name",
]

PARENT_GONE_EXIT = 70  # any non-zero code does; nobody is left to read it

# The -c program of the default launcher: load framing.py and this file under
# their own names without importing the package (so this file's import of
# .framing finds it loaded), then serve. argv: the two files, then the fds.
BOOTSTRAP = """\
import sys
from importlib.util import module_from_spec, spec_from_file_location
for name, path in (("framing", sys.argv[1]), ("worker", sys.argv[2])):
    spec = spec_from_file_location("asyncbridge._processes." + name, path)
    module = module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
sys.exit(module.serve(int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
"""


def bootstrap_command(fds: tuple[int, int, int]) -> list[str]:
    """The command line of a worker started by the default launcher, serving the pipe ends ``fds``."""
    return [sys.executable, "-c", BOOTSTRAP, framing_file, __file__, *map(str, fds)]


_importing_main = False


def importing_main() -> bool:
    """True while this worker imports the parent's main module (see :class:`LazyMain`)."""
    return _importing_main


class LazyMain(types.ModuleType):
    """Stands in for ``__main__`` until something is looked up in it.

    ``multiprocessing``'s spawn and anyio import the parent's main module into
    every worker before the first call, which costs as much as the parent's
    own imports. Here it is imported (as ``__mp_main__``, under an ``if
    __name__ == "__main__"`` guard like spawn) only when a call needs
    something from it, such as a function defined in the script.
    """

    def __init__(self, reference: tuple[str, str]) -> None:
        super().__init__("__main__")
        self.asyncbridge_main_reference = reference

    def __getattr__(self, name: str) -> Any:
        global _importing_main
        if _importing_main:  # the main module looks itself up while it loads
            raise AttributeError(name)
        import runpy

        kind, where = self.asyncbridge_main_reference
        _importing_main = True
        try:
            if kind == "name":
                namespace = runpy.run_module(where, run_name="__mp_main__", alter_sys=True)
            else:
                namespace = runpy.run_path(where, run_name="__mp_main__")
        finally:
            _importing_main = False
        main = types.ModuleType("__mp_main__")
        main.__dict__.update(namespace)
        sys.modules["__main__"] = sys.modules["__mp_main__"] = main
        self.__dict__.update(namespace)
        return getattr(main, name)


def serve_connections(request: Any, reply: Any, alive: Any) -> None:
    """Entry point for a worker started by a ``multiprocessing`` context (``mp_context``).

    The three pipe ends arrive as ``multiprocessing.connection.Connection``
    objects, the standard way to hand file descriptors to a spawned or
    forkserver child; multiprocessing has already set up ``sys.path`` and the
    main module.
    """
    fds: list[int] = []
    for conn in (request, reply, alive):
        fds.append(os.dup(conn.fileno()))
        conn.close()
    code = serve(fds[0], fds[1], fds[2], lazy_main=False)
    if code:
        sys.exit(code)


def serve(request_fd: int, reply_fd: int, alive_fd: int, *, lazy_main: bool = True) -> int:
    """Run calls from ``request_fd`` until asked to stop; return the exit code."""
    # Ctrl-C in a terminal signals the whole process group. The parent decides
    # what a KeyboardInterrupt means (cancelling its awaits kills the workers
    # that run them); a worker dying of it on its own would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(alive_fd)
    with open(request_fd, "rb", buffering=0) as requests:
        return _serve(requests, reply_fd, lazy_main)


def _serve(requests: Any, reply_fd: int, lazy_main: bool) -> int:
    init = read_frame(requests)
    if not init:
        return 0
    sys_path, main_reference, initializer = pickle.loads(init)
    sys.path[:] = sys_path
    if lazy_main and main_reference is not None:
        sys.modules["__main__"] = LazyMain(main_reference)
    _line_buffer_stdio()
    if initializer is not None:
        try:
            fn, args = pickle.loads(initializer)
            fn(*args)
        except BaseException as exc:  # reported to the parent, which stops respawning
            _flush_stdio()
            write_frame(reply_fd, _exception_reply(START_FAILED, exc))
            return 1
    write_frame(reply_fd, pickle.dumps((READY,), PROTOCOL))
    while True:
        frame = read_frame(requests)
        if not frame:  # an empty frame (stop) or end of file (the parent closed the pipe)
            _flush_stdio()
            return 0
        reply = _run(frame)
        # Whatever the call printed is out before its result: a caller that
        # awaited the call sees the output too.
        _flush_stdio()
        write_frame(reply_fd, reply)


def _run(frame: bytes | bytearray) -> bytes:
    try:
        fn, args, kwargs = pickle.loads(frame)
    except BaseException as exc:
        unpickling_error = pickle.UnpicklingError(
            f"the worker process could not unpickle the call: {type(exc).__name__}: {exc}"
        )
        unpickling_error.__cause__ = exc
        return _exception_reply(RAISED, unpickling_error)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # goes back to the caller, who re-raises it
        return _exception_reply(RAISED, exc)
    try:
        return pickle.dumps((RESULT, result), PROTOCOL)
    except Exception as exc:
        error: Exception = exc
    cloudpickle = import_cloudpickle()
    if cloudpickle is not None:
        try:
            data: bytes = cloudpickle.dumps((RESULT, result), PROTOCOL)
        except Exception as exc:
            error = exc
        else:
            return data
    kind = pickle.PicklingError if isinstance(error, pickle.PicklingError) else TypeError
    name = getattr(fn, "__qualname__", None) or repr(fn)
    sending_error = kind(
        f"the result of {name}() could not be sent back from the worker process: "
        f"{type_name(result)} cannot be pickled ({error})"
    )
    sending_error.__cause__ = error
    return _exception_reply(RAISED, sending_error)


def process_chunk(fn: Any, chunk: Any) -> tuple[list[Any], bytes | None]:
    """Run ``fn(*args)`` for each ``args`` of ``chunk`` (a chunk of ``ProcessExecutor.map``), in order.

    Returns the results, and None; or, if a call raised, the results of the
    calls before it and the exception as a pickled ``(RAISED, ...)`` reply (the
    calls after it do not run), so the parent raises it at the item it
    belongs to, with the worker's traceback.
    """
    results: list[Any] = []
    for args in chunk:
        try:
            results.append(fn(*args))
        except BaseException as exc:  # goes back to the caller, who re-raises it
            return results, _exception_reply(RAISED, exc)
    return results, None


def _exception_reply(kind: int, exc: BaseException) -> bytes:
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        description = f"{type_name(exc)}: {exc}"
    except Exception:
        description = type_name(exc)
    try:
        data = pickle.dumps((kind, exc, text, description), PROTOCOL)
        pickle.loads(data)  # the parent must be able to rebuild it too, or it gets the description
    except Exception as pickle_exc:
        description += f" (the exception itself could not be pickled: {type(pickle_exc).__name__}: {pickle_exc})"
        data = pickle.dumps((kind, None, text, description), PROTOCOL)
    return data


def type_name(obj: object) -> str:
    """The name of ``obj``'s type, with its module unless it is a builtin."""
    cls = type(obj)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def import_cloudpickle() -> Any:
    """The cloudpickle module if it is installed, else None."""
    try:
        import cloudpickle  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return None
    return cloudpickle


def _watch_parent(alive_fd: int) -> None:
    def watch() -> NoReturn:
        try:
            while os.read(alive_fd, 1):
                pass
        except OSError:
            pass
        os._exit(PARENT_GONE_EXIT)

    threading.Thread(target=watch, name="asyncbridge-parent-watch", daemon=True).start()


def _line_buffer_stdio() -> None:
    # Prints from a long call show up line by line, as in a terminal, rather
    # than when a block buffer fills.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(line_buffering=True)
            except Exception:  # not a TextIOWrapper after all: leave it as it is
                continue


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
