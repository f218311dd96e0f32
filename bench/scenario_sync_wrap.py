"""Scenario 5: calling async code from sync code (the reverse bridge, ``sync_wrap``).

Two situations, a trivial coroutine function (``return 42``) called ``CALLS``
times in sequence, mean µs per call:

- from plain sync code, no event loop running anywhere: ``asyncio.run`` per
  call (the baseline), one reused ``asyncio.Runner`` (a reference: what
  keeping a loop alive buys), asgiref's ``async_to_sync``, anyio's blocking
  portal (started once, outside the timing) and asyncbridge's ``sync_wrap``;
- the same plain-code rows again, each sample in a fresh interpreter pinned to
  one CPU (``os.sched_setaffinity``) before any thread starts: this takes the
  hypervisor's cross-CPU wake-up latency out of the figures;
- from a worker thread of a running event loop, back into that loop: on
  asyncio ``run_coroutine_threadsafe(...).result()`` from an
  ``asyncio.to_thread`` worker (the baseline), asgiref's ``async_to_sync``
  inside ``sync_to_async``, ``anyio.from_thread.run`` inside
  ``anyio.to_thread.run_sync``; on trio ``trio.from_thread.run``; and
  asyncbridge's ``sync_wrap`` inside ``asyncbridge.to_thread``.

"""

from __future__ import annotations

import asyncio
import functools
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    CAN_PIN,
    Backend,
    Candidate,
    Config,
    NotAvailable,
    Sample,
    Section,
    Table,
    child_main,
    measure,
    pin_to_one_cpu,
    ratio_check,
    run_child,
    run_loop,
)

NAME = "sync_wrap"
TITLE = "5. Async from sync: sync_wrap and its peers"

CALLS = 300


async def answer() -> int:
    return 42


def _sync_wrap() -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    try:
        from asyncbridge import sync_wrap  # type: ignore[attr-defined]
    except ImportError as exc:
        raise NotAvailable("not yet available (asyncbridge has no sync_wrap yet)") from exc
    return sync_wrap  # type: ignore[no-any-return]


def _timed(call: Callable[[], Any], n: int) -> float:
    for _ in range(min(n, 20)):  # warm-up
        call()
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n * 1e6


# -- from plain sync code -------------------------------------------------------


def plain_asyncio_run(n: int) -> Sample:
    return {"us": _timed(lambda: asyncio.run(answer()), n)}


def plain_runner(n: int) -> Sample:
    runner_cls = getattr(asyncio, "Runner", None)
    if runner_cls is None:
        raise NotAvailable("asyncio.Runner needs Python 3.11")
    with runner_cls() as runner:
        return {"us": _timed(lambda: runner.run(answer()), n)}


def plain_asgiref(n: int) -> Sample:
    from asgiref.sync import async_to_sync

    return {"us": _timed(async_to_sync(answer), n)}


def plain_anyio_portal(n: int) -> Sample:
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal:
        return {"us": _timed(lambda: portal.call(answer), n)}


def plain_asyncbridge(n: int) -> Sample:
    return {"us": _timed(_sync_wrap()(answer), n)}


def plain_pingpong(n: int) -> Sample:
    """The floor of any design with a loop in another thread: two wake-ups per call, no loop at all."""
    requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    replies: queue.SimpleQueue[int] = queue.SimpleQueue()

    def echo() -> None:
        while (item := requests.get()) is not None:
            replies.put(item)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()

    def round_trip() -> int:
        requests.put(42)
        return replies.get()

    try:
        return {"us": _timed(round_trip, n)}
    finally:
        requests.put(None)
        thread.join()


PLAIN: dict[str, Callable[[int], Sample]] = {
    "asyncbridge": plain_asyncbridge,
    "asyncio_run": plain_asyncio_run,
    "asgiref": plain_asgiref,
    "anyio_portal": plain_anyio_portal,
    "runner": plain_runner,
    "pingpong": plain_pingpong,
}


def pinned_child(key: str, n: str) -> Sample:
    """In a fresh interpreter pinned to one CPU before any thread starts: one plain-code sample."""
    pin_to_one_cpu()
    return PLAIN[key](int(n))


def _pinned(key: str, n: int) -> Callable[[], Sample]:
    return lambda: run_child(Path(__file__), key, str(n))


# -- from a worker thread of a running loop -------------------------------------


@dataclass(frozen=True)
class FromThread:
    name: str
    backends: tuple[Backend, ...]
    run: Callable[[Backend, int], float]  # µs per call
    note: str = ""


def _thread_asyncio(backend: Backend, n: int) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(_timed, lambda: asyncio.run_coroutine_threadsafe(answer(), loop).result(), n)

    return run_loop(backend, main)


def _thread_asgiref(backend: Backend, n: int) -> float:
    from asgiref.sync import async_to_sync, sync_to_async

    async def main() -> float:
        return await sync_to_async(_timed, thread_sensitive=False)(async_to_sync(answer), n)

    return run_loop(backend, main)


def _thread_anyio(backend: Backend, n: int) -> float:
    import anyio.from_thread
    import anyio.to_thread

    async def main() -> float:
        return await anyio.to_thread.run_sync(_timed, lambda: anyio.from_thread.run(answer), n)

    return run_loop(backend, main)


def _thread_trio(backend: Backend, n: int) -> float:
    import trio

    async def main() -> float:
        return await trio.to_thread.run_sync(_timed, lambda: trio.from_thread.run(answer), n)

    return run_loop(backend, main)


def _thread_asyncbridge(backend: Backend, n: int) -> float:
    sync_wrap = _sync_wrap()
    from asyncbridge import to_thread

    async def main() -> float:
        return await to_thread(_timed, sync_wrap(answer), n)

    return run_loop(backend, main)


THREAD_ASYNCIO = "run_coroutine_threadsafe().result()"
THREAD_TRIO = "trio.from_thread.run"
FROM_THREAD = [
    FromThread("asyncbridge sync_wrap", ("asyncio", "uvloop", "trio"), _thread_asyncbridge, "in asyncbridge.to_thread"),
    FromThread(THREAD_ASYNCIO, ("asyncio", "uvloop"), _thread_asyncio, "in asyncio.to_thread"),
    FromThread(THREAD_TRIO, ("trio",), _thread_trio, "in trio.to_thread.run_sync"),
    FromThread("asgiref async_to_sync", ("asyncio", "uvloop"), _thread_asgiref, "in sync_to_async"),
    FromThread("anyio.from_thread.run", ("asyncio", "uvloop", "trio"), _thread_anyio, "in anyio.to_thread.run_sync"),
]

AB = "asyncbridge sync_wrap"
ASYNCIO_RUN = "asyncio.run per call"
PINGPONG = "thread round trip, no loop"
PINNED_TITLE = "From plain sync code, every thread pinned to one CPU"


def run(cfg: Config) -> Section:
    n = cfg.size(CALLS, 100)
    rounds = cfg.rounds_or(5)
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"A trivial coroutine function (`return 42`) called {n} times in sequence after 20 "
            f"warm-up calls; mean µs per call, {rounds} rounds. From plain sync code, every way but "
            "`asyncio.run` and `asyncio.Runner` runs the coroutine in another thread, which costs two "
            "thread wake-ups per call; on this VM a thread woken on the other CPU can take tens of "
            "microseconds to run, depending on the hypervisor (the thread round trip row measures it "
            "in the same run). The pinned table repeats the plain rows in fresh interpreters pinned to "
            "one CPU, where a wake-up is a plain context switch: it shows what each design costs itself."
        ),
    )
    ways: list[tuple[str, str, str, bool]] = [  # (name, PLAIN key, note, reference)
        (AB, "asyncbridge", "", False),
        (ASYNCIO_RUN, "asyncio_run", "a new loop per call", False),
        ("asgiref async_to_sync", "asgiref", "", False),
        ("anyio blocking portal .call", "anyio_portal", "portal started once", False),
        ("asyncio.Runner().run", "runner", "one loop reused, in the calling thread", True),
        (PINGPONG, "pingpong", "SimpleQueue round trip to a 2nd thread, no loop", True),
    ]
    plain = [Candidate(name, functools.partial(PLAIN[key], n), note, ref) for name, key, note, ref in ways]
    rows = measure("sync_wrap/plain", plain, rounds, cfg.progress, show="us")
    table = Table("From plain sync code (no loop running)", rows, "us", "µs per call", "lower", (ASYNCIO_RUN,))
    section.tables.append(table)
    section.checks.append(
        ratio_check(
            "sync_wrap from sync code ≥ 5x faster than asyncio.run", table, AB, ASYNCIO_RUN, 0.2, at_least=False
        )
    )
    if CAN_PIN:
        pinned = [Candidate(name, _pinned(key, n), note, ref) for name, key, note, ref in ways]
        rows = measure("sync_wrap/plain-pinned", pinned, rounds, cfg.progress, show="us")
        table = Table(PINNED_TITLE, rows, "us", "µs per call", "lower", (ASYNCIO_RUN,))
        section.tables.append(table)
        section.checks.append(
            ratio_check(
                "sync_wrap from sync code ≥ 5x faster than asyncio.run (pinned to one CPU)",
                table,
                AB,
                ASYNCIO_RUN,
                0.2,
                at_least=False,
            )
        )
    for backend in cfg.backends:
        ways = [w for w in FROM_THREAD if backend in w.backends]
        rows = measure(
            f"sync_wrap/thread/{backend}",
            [Candidate(w.name, _from_thread(w, backend, n), w.note) for w in ways],
            rounds,
            cfg.progress,
            show="us",
        )
        base = THREAD_TRIO if backend == "trio" else THREAD_ASYNCIO
        section.tables.append(
            Table(
                f"From a worker thread back into the running {backend} loop",
                rows,
                "us",
                "µs per call",
                "lower",
                (base,),
            )
        )
    return section


def _from_thread(way: FromThread, backend: Backend, n: int) -> Callable[[], Sample]:
    return lambda: {"us": way.run(backend, n)}


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    child_main(sys.argv[2:], pinned_child)
