"""``python -m asyncbridge watch``: run a program unchanged, report what blocked its event loops, in every process.

How it attaches without a code change: before the program starts, ``run_forever``
of asyncio's ``BaseEventLoop`` (and of ``uvloop.Loop``, when uvloop is
installed) is wrapped. Every way of running an asyncio loop ends up there:
``asyncio.run``, ``asyncio.Runner``, ``loop.run_until_complete``, uvicorn's own
loop factories. ``trio.run`` is wrapped too (when trio is imported), so that
the run's main function runs inside a detector. No event loop policy is
touched (Python 3.14 deprecates that API).

How it follows the process tree: watch sets ``ASYNCBRIDGE_WATCH`` (its
settings, as JSON, with a report directory) and puts a directory holding a
``sitecustomize.py`` first on ``PYTHONPATH``. Every Python process the program
starts (``subprocess`` of ``sys.executable``, multiprocessing's spawn and
forkserver children, uvicorn's ``--workers`` and ``--reload`` servers,
hypercorn's workers) imports it at startup, installs the same hooks, and
appends what it sees to ``<report directory>/<pid>.jsonl``, one
self-contained JSON line per fact (process, loop, block), written as it
happens: nothing is lost when a worker is killed or leaves through
``os._exit``. A fork child (gunicorn's workers) inherits the hooks of its
parent and writes under its own pid. The watched process merges every file
into one summary at exit. Nothing is injected into non-Python programs
(the variable means nothing to them), nor with ``--no-children``.

At exit, however it comes (the program returns, ``sys.exit``, an exception,
Ctrl-C, SIGTERM), the blocking sites are printed to stderr, grouped by the
blocking function and the caller that reached it, ranked by total blocked
time, with count, worst duration, and the processes they came from;
``--format json`` prints the same as JSON, ``--report FILE`` writes it to a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import runpy
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from ._detector import DEFAULT_THRESHOLD, BlockingDetector
from ._detector_event import BlockingEvent
from ._watch_report import event_dict, gather_processes, report, summary_text

__all__ = ["ENV_VAR", "NOTHING_CHECKED", "main", "watch_child"]

ENV_VAR = "ASYNCBRIDGE_WATCH"  # JSON settings for the watched program's Python children
NOTHING_CHECKED = 3  # the exit code when the program succeeded but ran no event loop

USAGE = (
    "usage: python -m asyncbridge watch [--threshold S] [--format text|json] [--report FILE] [--no-children]"
    " -- (SCRIPT | -m MODULE) [ARGS...]\n"
)
HELP = (
    USAGE
    + """
Run an asyncio, uvloop or trio program unchanged, with asyncbridge's
BlockingDetector attached to every event loop it runs, in its own process and
in every Python process it starts, and print at exit the places that blocked
a loop, ranked by total blocked time, with the processes they came from.

options:
  --threshold S    report blocks longer than S seconds (default 0.1)
  --format FORMAT  the summary printed to stderr at exit: text (default) or
                   json (one line, the schema of --report)
  --report FILE    also write the summary, and every event, to FILE as JSON
  --no-children    watch only this process, not the Python processes it starts
  -h, --help       show this help

Exit code: the program's; 2 if the program cannot be found; 3 if it succeeded
but ran no event loop, so that nothing was checked.

examples:
  python -m asyncbridge watch -- server.py --port 8000
  python -m asyncbridge watch --threshold 0.05 -- -m uvicorn app:app --workers 2
"""
)


@dataclass
class _Options:
    threshold: float = DEFAULT_THRESHOLD
    report: str | None = None
    format: str = "text"
    children: bool = True
    module: str | None = None
    script: str | None = None
    args: list[str] = field(default_factory=list[str])


class _UsageError(Exception):
    pass


_VALUED = {"--threshold", "--report", "--format"}


def _parse(argv: list[str]) -> _Options:
    options = _Options()
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name == "--no-children" and not eq:
            options.children = False
            continue
        if name in _VALUED:
            if not eq:
                if not rest:
                    raise _UsageError(f"{name} needs a value")
                value = rest.pop(0)
            _set_option(options, name, value)
            continue
        if arg.startswith("-") and arg != "-m":
            raise _UsageError(f"unknown option {arg!r}")
        rest.insert(0, arg)  # the program starts here, even without "--"
        break
    if not rest:
        raise _UsageError("what should I run? give a SCRIPT or -m MODULE after --")
    if rest[0] == "-m":
        if len(rest) < 2:
            raise _UsageError("-m needs a module name")
        options.module, options.args = rest[1], rest[2:]
    else:
        options.script, options.args = rest[0], rest[1:]
    return options


def _set_option(options: _Options, name: str, value: str) -> None:
    if name == "--report":
        options.report = value
    elif name == "--format":
        if value not in {"text", "json"}:
            raise _UsageError(f"--format must be text or json, got {value!r}")
        options.format = value
    else:
        try:
            options.threshold = float(value)
        except ValueError:
            raise _UsageError(f"--threshold must be a number of seconds, got {value!r}") from None
        if not (options.threshold > 0 and options.threshold != float("inf")):
            raise _UsageError(f"--threshold must be a positive number of seconds, got {value!r}")


# -- attaching to every loop -------------------------------------------------------------


_title: str | None = None  # the title a server gave this process (gunicorn's "worker [app:app]"), if any


def _role() -> str | None:
    """What this process is, where known.

    The title a server gave it (gunicorn names its master and workers, whether
    or not setproctitle is installed to show it), else multiprocessing's name
    for its children (``SpawnProcess-1``, uvicorn's and hypercorn's workers).
    """
    if _title is not None:
        return _title
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:
        return None
    try:
        name: str = multiprocessing.current_process().name
    except Exception:  # half-initialised, at startup or exit: no name then
        return None
    return None if name == "MainProcess" else name


class _Watcher:
    """Wraps the loop runners of this process, and collects what the detectors report.

    In the watched process itself, events and loops are kept in memory; in any
    other process (a child that imported the bootstrap, or a fork child that
    inherited these hooks) each fact is appended to the report directory, under
    the writing process's pid.
    """

    def __init__(self, threshold: float, report_dir: str | None, *, child: bool) -> None:
        self.threshold = threshold
        self.report_dir = report_dir
        self.child = child
        self.pid = os.getpid()
        self.events: list[BlockingEvent] = []  # appended from watchdog threads
        self.loops: set[int] = set()  # the loops run: asyncio.run runs one three times (its shutdown steps)
        self.active = False
        self.loops_seen = 0  # in every process watched, once merged
        self._restore: list[Callable[[], None]] = []

    @property
    def _local(self) -> bool:
        return not self.child and os.getpid() == self.pid

    # -- what happened ------------------------------------------------------------

    def loop_started(self, backend: str, loop_id: int) -> None:
        if self._local:
            self.loops.add(loop_id)
        elif loop_id not in self.loops:  # each loop once, with the process's first use of it
            self.loops.add(loop_id)
            self.write({"kind": "loop", "backend": backend, "loop": loop_id})

    def on_block(self, event: BlockingEvent) -> None:
        """Record one event: in the detector's watchdog thread."""
        if self._local:
            self.events.append(event)
        else:
            self.write({"kind": "event", **event_dict(event)})

    def process_started(self) -> None:
        """Note this process in the report directory (a child at startup, or just after a fork)."""
        global _title
        if self.active and not self._local:
            self.loops = set()  # a fork child: its parent's loops are not its own
            _title = None  # nor its parent's title: a server names its child after forking it
            self.write({"kind": "process", "ppid": os.getppid(), "argv": list(getattr(sys, "argv", []))})

    def write(self, fact: dict[str, Any]) -> None:
        """Append one fact as a JSON line to this process's file: one ``write``, so lines never interleave."""
        if self.report_dir is None:
            return
        pid = os.getpid()
        line = json.dumps({"pid": pid, "role": _role(), **fact}) + "\n"
        try:
            fd = os.open(os.path.join(self.report_dir, f"{pid}.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:  # the watcher has gone (the directory with it): nobody will read this
            pass

    # -- the hooks ------------------------------------------------------------------

    def install(self) -> None:
        self.active = True
        classes: list[type[Any]] = [asyncio.BaseEventLoop]
        try:
            import uvloop
        except ImportError:
            pass
        else:
            classes.append(uvloop.Loop)
        for cls in classes:
            own = cls.__dict__.get("run_forever")
            original: Callable[[Any], None] = cls.run_forever
            cls.run_forever = self._wrap(original)
            if own is None:
                self._restore.append(functools.partial(delattr, cls, "run_forever"))
            else:
                self._restore.append(functools.partial(setattr, cls, "run_forever", own))
        self._on_import("trio", self._patch_trio)
        self._on_import("gunicorn.util", self._patch_gunicorn)

    def _on_import(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        """Call ``patch(module)`` now if the program has imported ``name``, else when (if ever) it does."""
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
        else:
            finder = _PatchOnImport(name, patch)
            sys.meta_path.insert(0, finder)
            self._restore.append(functools.partial(_remove, sys.meta_path, finder))

    def uninstall(self) -> None:
        self.active = False
        while self._restore:
            self._restore.pop()()

    def _wrap(self, original: Callable[[Any], None]) -> Callable[[Any], None]:
        watcher = self

        @functools.wraps(original)
        def run_forever(loop: Any) -> None:
            detector = BlockingDetector(watcher.threshold, on_block=watcher.on_block)
            try:
                detector.attach(loop)
            except Exception:  # never let the watcher break the program it watches
                traceback.print_exc()
                return original(loop)
            watcher.loop_started("asyncio", id(loop))
            try:
                return original(loop)
            finally:
                detector.detach()

        return run_forever

    def _patch_trio(self, trio: ModuleType) -> None:
        original: Callable[..., Any] = trio.run
        if not self.active:
            return
        setattr(trio, "run", self._wrap_trio(original))  # noqa: B010  # trio's own type says run is a function
        self._restore.append(functools.partial(setattr, trio, "run", original))

    def _patch_gunicorn(self, util: ModuleType) -> None:
        """Learn the titles gunicorn gives its processes: its workers are fork children that name no role otherwise."""
        original: Callable[[str], None] | None = getattr(util, "_setproctitle", None)
        if not self.active or original is None:
            return

        @functools.wraps(original)
        def set_title(title: str) -> None:
            global _title
            _title = f"gunicorn: {title}"  # what ps shows for it, with setproctitle installed
            original(title)

        setattr(util, "_setproctitle", set_title)  # noqa: B010  # a private function of gunicorn's
        self._restore.append(functools.partial(setattr, util, "_setproctitle", original))

    def _wrap_trio(self, original: Callable[..., Any]) -> Callable[..., Any]:
        watcher = self

        @functools.wraps(original)
        def run(async_fn: Callable[..., Any], *args: Any, **options: Any) -> Any:
            async def watched() -> Any:
                detector = BlockingDetector(watcher.threshold, on_block=watcher.on_block)
                async with detector:
                    watcher.loop_started("trio", id(detector))
                    return await async_fn(*args)

            # The main task is named after the program's function, not after this wrapper.
            for attribute in ("__name__", "__qualname__", "__module__"):
                value = getattr(async_fn, attribute, None)
                if isinstance(value, str):
                    setattr(watched, attribute, value)
            return original(watched, **options)

        return run


def _remove(items: list[Any], item: object) -> None:
    if item in items:
        items.remove(item)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Call ``patch(module)`` once the top-level module ``name`` has been imported (executed)."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self._name = name
        self._patch = patch
        self._finding = False

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self._name or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)  # the finders after this one
        finally:
            self._finding = False
        loader = None if spec is None else spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute: Callable[[ModuleType], None] = loader.exec_module
        patch = self._patch

        def exec_module(module: ModuleType) -> None:
            execute(module)
            try:
                patch(module)
            except Exception:  # never let the watcher break the program it watches
                traceback.print_exc()

        # This one spec's loader only; a loader that takes no attributes leaves that module unwatched.
        with contextlib.suppress(AttributeError):
            loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


# -- the children --------------------------------------------------------------------------

_BOOTSTRAP = '''\
"""Written by python -m asyncbridge watch: watch this Python process's event loops too."""


def _asyncbridge_watch():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        settings = __import__("json").loads(os.environ.get("ASYNCBRIDGE_WATCH") or "null")
        if settings:
            try:
                from asyncbridge._watch import watch_child
            except ImportError:  # none here, or another version: load the watcher's, sys.path untouched
                import importlib.machinery
                import importlib.util

                for name in [n for n in sys.modules if n == "asyncbridge" or n.startswith("asyncbridge.")]:
                    del sys.modules[name]
                spec = importlib.machinery.PathFinder.find_spec("asyncbridge", [settings["package_root"]])
                module = importlib.util.module_from_spec(spec)
                sys.modules["asyncbridge"] = module
                try:
                    spec.loader.exec_module(module)
                    from asyncbridge._watch import watch_child
                except BaseException:  # not this interpreter's: leave it unwatched, as it was
                    for name in [n for n in sys.modules if n == "asyncbridge" or n.startswith("asyncbridge.")]:
                        del sys.modules[name]
                    raise
            watch_child()
    except Exception:
        pass  # never stop a program from starting
    # Run the sitecustomize this one hides, if there is one.
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", [p for p in sys.path if p and p != here])
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_asyncbridge_watch()
del _asyncbridge_watch
'''

_child_watcher: _Watcher | None = None


def watch_child() -> None:
    """Install the hooks in this process, a Python child of a watched program (the bootstrap calls it)."""
    global _child_watcher
    if _child_watcher is not None:
        return
    settings = json.loads(os.environ[ENV_VAR])
    watcher = _Watcher(float(settings["threshold"]), str(settings["dir"]), child=True)
    watcher.install()
    _child_watcher = watcher
    watcher.process_started()
    os.register_at_fork(after_in_child=watcher.process_started)


class _Children:
    """The report directory and the bootstrap that make Python children of the program watch themselves."""

    def __init__(self, threshold: float) -> None:
        self.root = tempfile.mkdtemp(prefix="asyncbridge-watch-")
        self.reports = os.path.join(self.root, "reports")
        bootstrap = os.path.join(self.root, "bootstrap")
        os.mkdir(self.reports)
        os.mkdir(bootstrap)
        Path(bootstrap, "sitecustomize.py").write_text(_BOOTSTRAP, encoding="utf-8")
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._saved = {name: os.environ.get(name) for name in (ENV_VAR, "PYTHONPATH")}
        settings = {"threshold": threshold, "dir": self.reports, "package_root": package_root}
        os.environ[ENV_VAR] = json.dumps(settings)
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = bootstrap if not path else bootstrap + os.pathsep + path

    def close(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(self.root, ignore_errors=True)


# -- running the program -------------------------------------------------------------------


def _check_program(options: _Options) -> str | None:
    """Why the program cannot be run, or ``None``: said before anything runs, not as a traceback."""
    if options.module is not None:
        try:
            spec = importlib.util.find_spec(options.module)
        except (ImportError, ValueError) as exc:  # a parent package that is missing, or broken
            return f"cannot run -m {options.module}: {exc}"
        if spec is None:
            return f"cannot run -m {options.module}: no module named {options.module!r} (is it installed?)"
        if spec.submodule_search_locations is not None:
            main_spec = importlib.util.find_spec(f"{options.module}.__main__")
            if main_spec is None:
                return f"cannot run -m {options.module}: it is a package with no __main__ module"
        return None
    assert options.script is not None
    if not os.path.exists(options.script):
        return f"cannot run {options.script!r}: no such file (for a module, use -m MODULE)"
    return None


def _run_program(options: _Options) -> None:
    if options.module is not None:
        sys.argv = [options.module, *options.args]  # runpy puts the module's path in argv[0]
        runpy.run_module(options.module, run_name="__main__", alter_sys=True)
    else:
        assert options.script is not None
        script = os.path.abspath(options.script)  # as `python SCRIPT` does: absolute __file__
        sys.argv = [options.script, *options.args]
        sys.path[0] = script if os.path.isdir(script) else os.path.dirname(script)
        runpy.run_path(script, run_name="__main__")


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwind the program, so that the summary gets printed


def main(argv: list[str]) -> int:
    """Run ``python -m asyncbridge watch ARGV``; return the exit code."""
    if argv[:1] in (["-h"], ["--help"]):
        print(HELP, end="")
        return 0
    try:
        options = _parse(argv)
    except _UsageError as exc:
        print(f"{USAGE}asyncbridge watch: error: {exc}", file=sys.stderr)
        return 2
    if _child_watcher is not None:  # watch run by a watched program: this one takes over here
        _child_watcher.uninstall()
    problem = _check_program(options)
    if problem is not None:
        print(f"asyncbridge watch: error: {problem}", file=sys.stderr)
        return 2
    children = _Children(options.threshold) if options.children else None
    watcher = _Watcher(options.threshold, None if children is None else children.reports, child=False)
    watcher.install()
    os.register_at_fork(after_in_child=watcher.process_started)  # a no-op once the watcher is uninstalled
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    code = 0
    try:
        _run_program(options)
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:
        code = 130  # what a shell reports for a program ended by SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        watcher.uninstall()
        if os.getpid() == watcher.pid:  # not in a fork child of the program that returned here: it reported already
            _finish(watcher, children, options)
    if code == 0 and os.getpid() == watcher.pid and not watcher.loops_seen:
        code = NOTHING_CHECKED
    return code


def _finish(watcher: _Watcher, children: _Children | None, options: _Options) -> None:
    """Merge every process's report, clean up, and print (and write) the summary."""
    sys.stdout.flush()
    processes = gather_processes(len(watcher.loops), list(watcher.events), watcher.report_dir)
    if children is not None:
        children.close()
    if options.format == "json":
        print(json.dumps(report(watcher.threshold, processes)), file=sys.stderr, flush=True)
    else:
        print(summary_text(watcher.threshold, processes), file=sys.stderr, flush=True)
    if options.report is not None:
        with open(options.report, "w", encoding="utf-8") as file:
            json.dump(report(watcher.threshold, processes), file, indent=2)
            file.write("\n")
    watcher.loops_seen = sum(process.loops for process in processes)
