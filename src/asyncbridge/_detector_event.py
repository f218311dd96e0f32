"""BlockingEvent: one block of an event loop, and how to tell a person about it.

Kept apart from the detector (``_detector.py``, ``_detector_session.py``) so that
strict mode (``_strict.py``), which creates events too, does not import it.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["BlockingEvent", "frame_summaries", "library_frame"]

FRAMES_ABOVE_SITE = 3  # how many callers of the blocking frame a report shows; a readable few
MAX_REPORT_FRAMES = 12  # longer stacks are elided in the middle of a report (never in ``stack``)


# Frames (file name, function) that run an event loop's tasks and callbacks: a caller is never above one.
_LOOP_RUNNERS = frozenset(
    {
        ("events.py", "_run"),  # asyncio's Handle._run: every callback and task step
        ("base_events.py", "_run_once"),
        ("base_events.py", "run_forever"),
        ("base_events.py", "run_until_complete"),
        ("runners.py", "run"),  # asyncio.run, under uvloop too (its loop is in C)
        ("_run.py", "unrolled_run"),  # trio
        ("_run.py", "run"),
        ("_run.py", "start_guest_run"),
    }
)


@dataclass(frozen=True, eq=False)
class BlockingEvent:
    """One time the event loop thread did not get back to the loop, or made a known blocking call.

    Attributes:
        duration: seconds the loop was blocked, measured to the end of the
            block. For a strict-mode event, how long the blocking call took
            (``0.0`` when strict mode raised instead of making the call).
        stack: the loop thread's stack, taken while it was blocked (for a
            strict-mode event, at the call), innermost frame last, as
            :func:`traceback.extract_stack` gives it.
        task_name: the name of the task that was running (an asyncio task's
            ``get_name()``, a trio task's ``name``), or ``None`` when the loop
            was running a plain callback or the task could not be told.
        started_at: when the block began, in seconds since the epoch (as
            :func:`time.time`).
        call: for a strict-mode event, the rule that matched, such as
            ``"time.sleep"``; ``None`` for a block found by the watchdog.
        thread_name: the name of the event loop's thread.
        cpu_time: of ``duration``, the seconds the loop thread ran on a CPU;
            ``None`` where the kernel does not say (only Linux does), and for
            strict-mode events. Measured from the watchdog's last look before
            the block to its first after, so right to about an interval.
        cpu_wait: of ``duration``, the seconds the loop thread was ready to run
            but waited for a CPU that other processes (or threads) had; ``None``
            as for ``cpu_time``. See :attr:`starved`.
        await_chain: the await chain of the task that was running, outermost
            first: one frame per coroutine (or async generator), each at the
            line where it awaits the next, down to the one that blocked. The
            running task's coroutines are read from ``stack``; before them come
            those of the tasks awaiting it, as far as they can be read: on
            Python 3.14+ from :func:`asyncio.capture_call_graph` (its
            ``awaited_by``), on earlier asyncio a task that awaits the blocked
            task directly, on trio the tasks whose nurseries it runs in. Empty
            for a plain callback and for strict-mode events.
        gil_holders: when the loop thread spent the block asleep waiting for the
            GIL, the other threads that were running meanwhile, as ``(thread
            name, stack)``, innermost frame last: they held it, and the loop's
            own line (in ``stack``) is innocent. Empty otherwise (Linux only).

    Example:
        ```python
        import time
        from asyncbridge import BlockingDetector, BlockingEvent


        def report(event: BlockingEvent) -> None:  # called in the detector's watchdog thread
            print(event.format())  # what the asyncbridge.blocking logger prints


        async with BlockingDetector(threshold=0.05, on_block=report) as detector:
            time.sleep(0.15)
        event = detector.events[0]
        assert event.duration > 0.05 and event.cause in {"blocked", "starved", "gil"}
        print(event.site, event.task_name)  # the frame that blocked, and its task
        ```
    """

    duration: float
    stack: traceback.StackSummary
    task_name: str | None
    started_at: float
    call: str | None = None
    thread_name: str | None = None
    cpu_time: float | None = None
    cpu_wait: float | None = None
    gil_holders: tuple[tuple[str, traceback.StackSummary], ...] = ()
    await_chain: tuple[traceback.FrameSummary, ...] = ()

    @property
    def starved(self) -> bool:
        """The loop thread spent at least half the block ready to run but waiting for a CPU.

        The machine was overloaded (or the process throttled): the code on
        the loop may be fine. ``False`` when the kernel does not say.
        """
        return self.cpu_wait is not None and self.call is None and self.cpu_wait >= self.duration / 2

    @property
    def cause(self) -> str:
        """``"call"`` (strict mode), ``"starved"``, ``"gil"`` (see :attr:`gil_holders`) or ``"blocked"``."""
        if self.call is not None:
            return "call"
        if self.starved:
            return "starved"
        return "gil" if self.gil_holders else "blocked"

    @property
    def site(self) -> traceback.FrameSummary | None:
        """The frame that blocked: the innermost frame of your own code.

        That is the innermost frame outside the standard library, installed
        packages and asyncbridge; failing that, the innermost frame outside
        the standard library; failing that, the innermost frame. ``None`` when
        ``stack`` is empty.
        """
        index = _site_index(self.stack)
        return None if index is None else self.stack[index]

    @property
    def caller(self) -> traceback.FrameSummary | None:
        """The frame of your own code that called :attr:`site`: the first one above it, skipping library frames.

        What tells apart two paths into one blocking function (a helper called
        from two endpoints). ``None`` when no frame of your code is above the
        site (an endpoint called by the framework), or when the site itself is
        not your code.
        """
        index = _site_index(self.stack)
        if index is None or library_frame(self.stack[index].filename):
            return None
        for outer in range(index - 1, -1, -1):
            frame = self.stack[outer]
            if not library_frame(frame.filename):
                return frame
            if (os.path.basename(frame.filename), frame.name) in _LOOP_RUNNERS:
                return None  # the site runs in a task: what started the loop did not call it
        return None

    def format(self) -> str:
        """Return the report the ``asyncbridge.blocking`` logger prints for this event."""
        where = ""
        if self.task_name is not None:
            where = f" in task {self.task_name!r}"
        if self.thread_name is not None and self.thread_name != "MainThread":
            where += f" (thread {self.thread_name!r})"
        cause = self.cause
        if cause == "starved":
            head = (
                f"event loop starved for {self.duration:.3f} s{where}: its thread was ready to run but waited "
                f"{self.cpu_wait:.3f} s for a CPU (and ran {self.cpu_time or 0.0:.3f} s); the machine was "
                "overloaded, not necessarily this code"
            )
        elif cause == "gil":
            return self._format_gil(where)
        elif self.call is None:
            head = f"event loop blocked for {self.duration:.3f} s{where}"
        elif self.duration > 0:
            head = f"blocking call {self.call}() on the event loop thread took {self.duration:.3f} s{where}"
        else:
            head = f"blocking call {self.call}() refused on the event loop thread{where}"
        index = _site_index(self.stack)
        if index is None:
            return f"{head}\n  (the stack could not be sampled while the loop was blocked)"
        site = self.stack[index]
        lines = [f"{head}\n  at {site.name} ({site.filename}:{site.lineno})\nStack (innermost last):\n"]
        frames = list(self.stack[max(0, index - FRAMES_ABOVE_SITE) :])
        if len(frames) > MAX_REPORT_FRAMES:
            keep = MAX_REPORT_FRAMES // 2
            skipped = len(frames) - 2 * keep
            lines += traceback.StackSummary.from_list(frames[:keep]).format()
            lines.append(f"  ... {skipped} more frames ...\n")
            frames = frames[-keep:]
        lines += traceback.StackSummary.from_list(frames).format()
        lines += self._format_await_chain()
        return "".join(lines).rstrip("\n")

    def _format_await_chain(self) -> list[str]:
        chain = list(self.await_chain)
        if not chain:
            return []
        links = [f"{frame.name} ({frame.filename}:{frame.lineno})" for frame in chain]
        if len(links) > MAX_REPORT_FRAMES:
            keep = MAX_REPORT_FRAMES // 2
            links = [*links[:keep], f"... {len(links) - 2 * keep} more ...", *links[-keep:]]
        return ["Await chain (outermost first):\n", *(f"  {link}\n" for link in links)]

    def _format_gil(self, where: str) -> str:
        names = ", ".join(repr(name) for name, _ in self.gil_holders)
        lines = [
            f"event loop waited {self.duration:.3f} s for the GIL{where}, held by other threads running "
            f"Python code: {names}\n"
        ]
        for name, stack in self.gil_holders:
            index = _site_index(stack)
            if index is None:
                lines.append(f"Thread {name!r} (stack not sampled)\n")
                continue
            site = stack[index]
            lines.append(f"Thread {name!r} at {site.name} ({site.filename}:{site.lineno}), innermost last:\n")
            lines += traceback.StackSummary.from_list(list(stack[max(0, index - FRAMES_ABOVE_SITE) :])).format()
        own = self.site
        if own is not None:
            lines.append(f"(the loop thread itself was at {own.name} ({own.filename}:{own.lineno}), waiting)\n")
        lines += self._format_await_chain()
        return "".join(lines).rstrip("\n")

    def __str__(self) -> str:
        return self.format()


@lru_cache(maxsize=1)
def _library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Directories of (the standard library, installed packages and asyncbridge)."""
    paths = sysconfig.get_paths()  # in a virtual environment, stdlib is the base Python's
    stdlib = {paths.get("stdlib"), paths.get("platstdlib")}
    packages = {paths.get("purelib"), paths.get("platlib"), os.path.dirname(os.path.abspath(__file__))}
    return (
        tuple(os.path.join(p, "") for p in stdlib if p),
        tuple(os.path.join(p, "") for p in packages if p),
    )


def library_frame(filename: str) -> int:
    """Return 2 for a standard library file, 1 for an installed package or asyncbridge, 0 for your code."""
    if filename.startswith("<frozen "):
        return 2
    stdlib, packages = _library_dirs()
    # Packages first: outside a virtual environment site-packages lies inside the stdlib directory.
    if filename.startswith(packages):
        return 1
    if filename.startswith(stdlib):
        return 2
    return 0


def _site_index(stack: traceback.StackSummary) -> int | None:
    if not stack:
        return None
    kinds = [library_frame(frame.filename) for frame in stack]
    for wanted in (0, 1):
        for index in range(len(stack) - 1, -1, -1):
            if kinds[index] <= wanted:
                return index
    return len(stack) - 1


def frame_summaries(frames: list[tuple[str, int, str]], *, lookup_lines: bool) -> traceback.StackSummary:
    """Build a StackSummary from ``(filename, lineno, name)``, innermost frame last."""
    return traceback.StackSummary.from_list(
        [traceback.FrameSummary(filename, lineno, name, lookup_line=lookup_lines) for filename, lineno, name in frames]
    )
