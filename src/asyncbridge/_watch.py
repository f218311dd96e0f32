"""``python -m asyncbridge watch``: run an asyncio program unchanged, report what blocked its loops.

How it attaches without a code change: before the program starts, ``run_forever``
of asyncio's ``BaseEventLoop`` (and of ``uvloop.Loop``, when uvloop is
installed) is wrapped. Every way of running a loop ends up there:
``asyncio.run``, ``asyncio.Runner``, ``loop.run_until_complete``, uvicorn's own
loop factories. The wrapper attaches a :class:`BlockingDetector` to the loop for
as long as it runs. No event loop policy is touched (Python 3.14 deprecates
that API).

At exit, however it comes (the program returns, ``sys.exit``, an exception,
Ctrl-C, SIGTERM), the blocking sites are printed to stderr, ranked by total
blocked time, with count and worst duration; ``--report FILE`` writes the same
as JSON.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ._detector import DEFAULT_THRESHOLD, BlockingDetector
from ._detector_event import BlockingEvent

__all__ = ["main"]

USAGE = "usage: python -m asyncbridge watch [--threshold S] [--report FILE] -- (SCRIPT | -m MODULE) [ARGS...]\n"
HELP = (
    USAGE
    + """
Run an asyncio (or uvloop) program unchanged, with asyncbridge's BlockingDetector
attached to every event loop it runs, and print at exit the places that blocked
the loop, ranked by total blocked time.

options:
  --threshold S   report blocks longer than S seconds (default 0.1)
  --report FILE   also write the summary, and every event, to FILE as JSON
  -h, --help      show this help

examples:
  python -m asyncbridge watch -- server.py --port 8000
  python -m asyncbridge watch --threshold 0.05 -- -m uvicorn app:app
"""
)


@dataclass
class _Options:
    threshold: float = DEFAULT_THRESHOLD
    report: str | None = None
    module: str | None = None
    script: str | None = None
    args: list[str] = field(default_factory=list[str])


class _UsageError(Exception):
    pass


def _parse(argv: list[str]) -> _Options:
    options = _Options()
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name in {"--threshold", "--report"}:
            if not eq:
                if not rest:
                    raise _UsageError(f"{name} needs a value")
                value = rest.pop(0)
            if name == "--report":
                options.report = value
                continue
            try:
                options.threshold = float(value)
            except ValueError:
                raise _UsageError(f"--threshold must be a number of seconds, got {value!r}") from None
            if not (options.threshold > 0 and options.threshold != float("inf")):
                raise _UsageError(f"--threshold must be a positive number of seconds, got {value!r}")
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


# -- attaching to every loop -------------------------------------------------------------


class _Watcher:
    """Wraps ``run_forever`` of every loop class, and collects what the detectors report."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.events: list[BlockingEvent] = []  # appended from watchdog threads
        self.loops: set[int] = set()
        self._restore: list[Callable[[], None]] = []

    def install(self) -> None:
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

    def uninstall(self) -> None:
        while self._restore:
            self._restore.pop()()

    def _wrap(self, original: Callable[[Any], None]) -> Callable[[Any], None]:
        watcher = self

        @functools.wraps(original)
        def run_forever(loop: Any) -> None:
            detector = BlockingDetector(watcher.threshold, on_block=watcher.events.append)
            try:
                detector.attach(loop)
            except Exception:  # never let the watcher break the program it watches
                traceback.print_exc()
                return original(loop)
            watcher.loops.add(id(loop))
            try:
                return original(loop)
            finally:
                detector.detach()

        return run_forever


# -- the summary ---------------------------------------------------------------------------


@dataclass
class _Site:
    function: str
    filename: str
    line: int | None
    code: str
    count: int = 0
    total: float = 0.0
    worst: float = 0.0


def _sites(events: list[BlockingEvent]) -> list[_Site]:
    sites: dict[tuple[str, str], _Site] = {}
    for event in events:
        frame = event.site
        if frame is None:
            key = ("", "(stack not sampled)")
            site = sites.setdefault(key, _Site("(stack not sampled)", "", None, ""))
        else:
            key = (frame.filename, frame.name)
            site = sites.setdefault(key, _Site(frame.name, frame.filename, frame.lineno, frame.line or ""))
        site.count += 1
        site.total += event.duration
        if event.duration >= site.worst:
            site.worst = event.duration
            if frame is not None:  # show the line of the worst block (a CPU loop has several)
                site.line, site.code = frame.lineno, frame.line or ""
    return sorted(sites.values(), key=lambda s: s.total, reverse=True)


def _shown(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive, on Windows
        return filename
    return filename if relative.startswith("..") else relative


def _summary_text(watcher: _Watcher) -> str:
    events = list(watcher.events)
    loops = len(watcher.loops)
    loops_text = f"{loops} event loop{'s' if loops != 1 else ''}"
    if not events:
        return f"asyncbridge watch: no block longer than {watcher.threshold} s on {loops_text}"
    total = sum(event.duration for event in events)
    lines = [
        f"asyncbridge watch: the event loop was blocked {len(events)} time{'s' if len(events) != 1 else ''} "
        f"for {total:.3f} s in total (threshold {watcher.threshold} s, {loops_text}); by total blocked time:",
        f"  {'total':>9}  {'count':>5}  {'worst':>9}  where",
    ]
    for site in _sites(events):
        where = site.function if not site.filename else f"{site.function}  {_shown(site.filename)}:{site.line}"
        lines.append(f"  {site.total:>7.3f} s  {site.count:>5}  {site.worst:>7.3f} s  {where}")
        if site.code:
            lines.append(f"  {'':>9}  {'':>5}  {'':>9}    {site.code}")
    return "\n".join(lines)


def _report(watcher: _Watcher) -> dict[str, Any]:
    events = list(watcher.events)

    def frame_dict(frame: Any) -> dict[str, Any]:
        return {"file": frame.filename, "line": frame.lineno, "function": frame.name, "code": frame.line or ""}

    return {
        "threshold": watcher.threshold,
        "loops": len(watcher.loops),
        "blocked_total": sum(event.duration for event in events),
        "sites": [
            {
                "function": site.function,
                "file": site.filename or None,
                "line": site.line,
                "code": site.code,
                "count": site.count,
                "total": site.total,
                "worst": site.worst,
            }
            for site in _sites(events)
        ],
        "events": [
            {
                "duration": event.duration,
                "started_at": event.started_at,
                "task_name": event.task_name,
                "thread_name": event.thread_name,
                "site": None if event.site is None else frame_dict(event.site),
                "stack": [frame_dict(frame) for frame in event.stack],
            }
            for event in events
        ],
    }


# -- running the program -------------------------------------------------------------------


def _run_program(options: _Options) -> None:
    if options.module is not None:
        sys.argv = [options.module, *options.args]  # runpy puts the module's path in argv[0]
        runpy.run_module(options.module, run_name="__main__", alter_sys=True)
    else:
        assert options.script is not None
        script = os.path.abspath(options.script)  # as `python SCRIPT` does: absolute __file__
        sys.argv = [options.script, *options.args]
        sys.path[0] = os.path.dirname(script)
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
    watcher = _Watcher(options.threshold)
    watcher.install()
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
        sys.stdout.flush()
        print(_summary_text(watcher), file=sys.stderr, flush=True)
        if options.report is not None:
            with open(options.report, "w", encoding="utf-8") as file:
                json.dump(_report(watcher), file, indent=2)
                file.write("\n")
    return code
