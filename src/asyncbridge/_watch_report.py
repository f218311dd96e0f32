"""What watch reports: the facts each watched process recorded, merged into a summary or a JSON report.

Each process of the watched program records its loops and blocks (the
watched process in memory, its children as JSON lines in the report
directory); :func:`gather_processes` reads them back, and
:func:`summary_text` and :func:`report` group the blocks by the blocking
function and the user's code that called it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._detector_event import BlockingEvent

__all__ = ["REPORT_VERSION", "ProcessReport", "event_dict", "frame_dict", "gather_processes", "report", "summary_text"]

REPORT_VERSION = 1  # of the JSON report's schema (docs/detector.md)


def frame_dict(frame: Any) -> dict[str, Any]:
    return {"file": frame.filename, "line": frame.lineno, "function": frame.name, "code": frame.line or ""}


def event_dict(event: BlockingEvent) -> dict[str, Any]:
    site, caller = event.site, event.caller
    holders: list[dict[str, Any]] = []
    for thread, stack in event.gil_holders:
        held = BlockingEvent(0.0, stack, None, 0.0).site
        holders.append({"thread": thread, "site": None if held is None else frame_dict(held)})
    return {
        "cause": event.cause,
        "cpu_time": event.cpu_time,
        "cpu_wait": event.cpu_wait,
        "gil_holders": holders,
        "duration": event.duration,
        "started_at": event.started_at,
        "task_name": event.task_name,
        "thread_name": event.thread_name,
        "site": None if site is None else frame_dict(site),
        "caller": None if caller is None else frame_dict(caller),
        "stack": [frame_dict(frame) for frame in event.stack],
        "await_chain": [frame_dict(frame) for frame in event.await_chain],  # optional in version 1: outermost first
    }


# -- the processes' reports ----------------------------------------------------------------


@dataclass
class ProcessReport:
    pid: int
    role: str | None
    argv: list[str] = field(default_factory=list[str])
    loops: int = 0
    events: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    @property
    def label(self) -> str:
        if self.role:
            return f"pid {self.pid} ({self.role})"
        if self.argv:
            command = " ".join(self.argv)
            return f"pid {self.pid} ({command[:40]}{'...' if len(command) > 40 else ''})"
        return f"pid {self.pid}"


def gather_processes(loops: int, events: Iterable[BlockingEvent], report_dir: str | None) -> list[ProcessReport]:
    """The watched process (first: ``loops`` loops, ``events``), then every process that reported to ``report_dir``."""
    main = ProcessReport(os.getpid(), "main", list(sys.argv), loops)
    for blocking in events:
        main.events.append({"pid": main.pid, "role": main.role, **event_dict(blocking)})
    others: dict[int, ProcessReport] = {}
    if report_dir is not None:
        for path in sorted(Path(report_dir).glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    fact = json.loads(line)
                    pid = int(fact["pid"])
                except (ValueError, KeyError, TypeError):  # a line cut short by a kill: skip it
                    continue
                if pid == main.pid:
                    continue
                process = others.setdefault(pid, ProcessReport(pid, None))
                process.role = fact.get("role") or process.role
                kind = fact.get("kind")
                if kind == "process":
                    process.argv = list(fact.get("argv") or [])
                elif kind == "loop":
                    process.loops += 1
                elif kind == "event":
                    process.events.append(fact)
    for process in others.values():  # the role a process got last (spawn children name themselves late)
        for event in process.events:
            event["role"] = process.role
    return [main, *sorted(others.values(), key=lambda p: p.pid)]


# -- the summary ---------------------------------------------------------------------------


@dataclass
class _Site:
    function: str
    filename: str
    line: int | None
    code: str
    caller: dict[str, Any] | None
    cause: str = "blocked"
    thread: str | None = None  # for "gil": the thread that held the GIL, running this site
    count: int = 0
    total: float = 0.0
    worst: float = 0.0
    processes: dict[int, int] = field(default_factory=dict[int, int])  # pid: count
    tasks: list[str] = field(default_factory=list[str])


def _sites(events: list[dict[str, Any]]) -> list[_Site]:
    """Group events by blocking function and the caller of your code that reached it, largest total first.

    The blocking function, not its line: a CPU loop is sampled on a different
    line each time, and is one site (the line shown is the worst block's).
    The caller by function too, its line the worst block's.
    """
    sites: dict[tuple[str | None, ...], _Site] = {}
    for event in events:
        frame: dict[str, Any] | None = event.get("site")
        caller: dict[str, Any] | None = event.get("caller")
        cause: str = event.get("cause") or "blocked"
        thread: str | None = None
        holders: list[dict[str, Any]] = event.get("gil_holders") or []
        if cause == "gil" and holders:  # the loop's own line is innocent: the site is the holder's
            frame, caller, thread = holders[0]["site"], None, holders[0]["thread"]
        caller_key = ("", "") if caller is None else (caller["file"], caller["function"])
        if frame is None:
            key = (cause, thread, "", "(stack not sampled)", *caller_key)
            site = sites.setdefault(key, _Site("(stack not sampled)", "", None, "", None, cause, thread))
        else:
            key = (cause, thread, frame["file"], frame["function"], *caller_key)
            site = sites.setdefault(
                key, _Site(frame["function"], frame["file"], frame["line"], frame["code"], caller, cause, thread)
            )
        duration = float(event["duration"])
        site.count += 1
        site.total += duration
        pid = int(event["pid"])
        site.processes[pid] = site.processes.get(pid, 0) + 1
        task = event.get("task_name")
        if task is not None and task not in site.tasks:
            site.tasks.append(task)
        if duration >= site.worst:
            site.worst = duration
            if frame is not None:  # show the lines of the worst block (a CPU loop has several)
                site.line, site.code, site.caller = frame["line"], frame["code"], caller
    return sorted(sites.values(), key=lambda s: s.total, reverse=True)


def _shown(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive, on Windows
        return filename
    return filename if relative.startswith("..") else relative


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 'es' if word.endswith('s') else 's'}"


def _watched_text(processes: list[ProcessReport]) -> str:
    loops = sum(process.loops for process in processes)
    return f"watched {_plural(len(processes), 'process')}, {_plural(loops, 'event loop')}"


def summary_text(threshold: float, processes: list[ProcessReport]) -> str:
    events = [event for process in processes for event in process.events]
    watched = _watched_text(processes)
    if not sum(process.loops for process in processes):
        return f"asyncbridge watch: {watched}: nothing was checked"
    if not events:
        return f"asyncbridge watch: no block longer than {threshold} s ({watched})"
    labels = {process.pid: process.label for process in processes}
    total = sum(float(event["duration"]) for event in events)
    lines = [
        f"asyncbridge watch: the event loop was blocked {_plural(len(events), 'time')} "
        f"for {total:.3f} s in total (threshold {threshold} s, {watched}); by total blocked time:",
        f"  {'total':>9}  {'count':>5}  {'worst':>9}  where",
    ]
    indent = " " * 31  # under "where"
    for site in _sites(events):
        where = site.function if not site.filename else f"{site.function}  {_shown(site.filename)}:{site.line}"
        lines.append(f"  {site.total:>7.3f} s  {site.count:>5}  {site.worst:>7.3f} s  {where}")
        if site.code:
            lines.append(f"{indent}  {site.code}")
        if site.cause == "starved":
            lines.append(f"{indent}starved, not blocked: the loop thread waited for a CPU (an overloaded machine)")
        elif site.cause == "gil":
            lines.append(f"{indent}the loop waited for the GIL, held by thread {site.thread!r} running this line")
        if site.caller is not None:
            caller = site.caller
            lines.append(f"{indent}called from {caller['function']}  {_shown(caller['file'])}:{caller['line']}")
            if caller["code"]:
                lines.append(f"{indent}  {caller['code']}")
        origin = ", ".join(
            labels.get(pid, f"pid {pid}") + (f" x{count}" if count > 1 else "") for pid, count in site.processes.items()
        )
        if site.tasks:
            shown = ", ".join(repr(task) for task in site.tasks[:3])
            origin += f"; task{'s' if len(site.tasks) > 1 else ''} {shown}{', ...' if len(site.tasks) > 3 else ''}"
        lines.append(f"{indent}in {origin}")
    return "\n".join(lines)


def report(threshold: float, processes: list[ProcessReport]) -> dict[str, Any]:
    events = [event for process in processes for event in process.events]
    return {
        "version": REPORT_VERSION,
        "threshold": threshold,
        "loops": sum(process.loops for process in processes),
        "blocked_total": sum(float(event["duration"]) for event in events),
        "processes": [
            {
                "pid": process.pid,
                "role": process.role,
                "argv": process.argv,
                "loops": process.loops,
                "events": len(process.events),
                "blocked_total": sum(float(event["duration"]) for event in process.events),
            }
            for process in processes
        ],
        "sites": [
            {
                "function": site.function,
                "file": site.filename or None,
                "line": site.line,
                "code": site.code,
                "caller": site.caller,
                "cause": site.cause,
                "gil_thread": site.thread,
                "count": site.count,
                "total": site.total,
                "worst": site.worst,
                "pids": list(site.processes),
                "tasks": site.tasks,
            }
            for site in _sites(events)
        ],
        "events": events,
    }
