"""What the Dask tests (tests/test_dask.py) run on Dask workers and on the scheduler.

A module of its own, importable by name: Dask workers are started with the
parent's sys.path (multiprocessing's spawn), and a decorated function is sent
by reference (module and name), so the workers import this module. Importing
it is cheap there: every executor below starts nothing until it is used.

The test cluster's scheduler listens on ``SCHEDULER_ADDRESS``, chosen here at
import and kept in the environment, so that the workers (which inherit it)
see the same address as the tests, and the module-level ``DASK`` executor can
be created before the cluster starts: it connects on its first call.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from asyncbridge import ProcessExecutor, ThreadExecutor, async_wrap
from asyncbridge.dask import DaskExecutor


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


SCHEDULER_PORT = int(os.environ.setdefault("ASYNCBRIDGE_TEST_DASK_PORT", str(_free_port())))
SCHEDULER_ADDRESS = f"tcp://127.0.0.1:{SCHEDULER_PORT}"

THREADS = ThreadExecutor(max_workers=2)
PROCESSES = ProcessExecutor(max_workers=2)
DASK = DaskExecutor(SCHEDULER_ADDRESS, connect_timeout=60)


def _count_primes(limit: int) -> int:
    """CPU-bound: the primes below ``limit``, by trial division."""
    count = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


# The same CPU-bound function, decorated at module level three times; only the executor differs.


@async_wrap(executor=THREADS)
def count_primes_in_threads(limit: int) -> int:
    return _count_primes(limit)


@async_wrap(executor=PROCESSES)
def count_primes_in_processes(limit: int) -> int:
    return _count_primes(limit)


@async_wrap(executor=DASK)
def count_primes_on_dask(limit: int) -> int:
    return _count_primes(limit)


MARK = "as imported"  # a test changes it in its own process only


@async_wrap(executor=DASK)
def read_mark() -> str:
    """MARK as the process running this sees it: the module's own when sent by reference."""
    return MARK


def whoami() -> int:
    return os.getpid()


def append_line(path: str, line: str) -> str:
    """A side effect per run, and a value no two runs share."""
    with open(path, "a") as f:
        f.write(line + "\n")
    return uuid.uuid4().hex


def echo_options(*, key: str, priority: int, workers: str, pure: str, retries: str, resources: str) -> dict[str, Any]:
    """Keyword arguments named like Dask's submit() options: they must reach the function."""
    return {
        "key": key,
        "priority": priority,
        "workers": workers,
        "pure": pure,
        "retries": retries,
        "resources": resources,
    }


def add_one(x: int) -> int:
    return x + 1


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def gated(started: str, gate: str) -> str:
    """Say it started (a Dask Event), then wait for the test to open the gate (another one)."""
    import distributed

    distributed.Event(started).set()
    distributed.Event(gate).wait(timeout=120)
    return "through the gate"


def die_once(marker: str) -> str:
    """Kill the worker process running this, the first time; return on the next run."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)
    return "survived"


def die_always() -> None:
    """Kill the worker process running this, every time."""
    os._exit(1)


def slow_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


# -- on the scheduler -------------------------------------------------------------------


def keys_starting_with(prefix: str, dask_scheduler: Any = None) -> list[str]:
    """The keys the scheduler knows (in any state) whose name starts with ``prefix``; for run_on_scheduler."""
    return [str(key) for key in dask_scheduler.tasks if str(key).startswith(prefix)]


def set_allowed_failures(value: int, dask_scheduler: Any = None) -> int:
    """Set how often the scheduler reschedules a task whose worker died; return the old value."""
    old: int = dask_scheduler.allowed_failures
    dask_scheduler.allowed_failures = value
    return old


ACTIVE_STATES = frozenset({"waiting", "queued", "no-worker", "processing"})


class InFlight(SchedulerPlugin):
    """A scheduler plugin: how many tasks whose key starts with ``prefix`` are unfinished at once, at most.

    A task counts from when the scheduler first puts it in a waiting,
    queued, no-worker or processing state until it leaves them (it is in
    memory, erred, released or forgotten): what the cluster has been handed
    and has not finished, seen by the scheduler itself.
    """

    name = "asyncbridge-in-flight"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.active: set[str] = set()
        self.peak = 0
        self.seen = 0

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        name = str(key)
        if not name.startswith(self.prefix):
            return
        if finish in ACTIVE_STATES:
            if name not in self.active:
                self.active.add(name)
                self.seen += 1
                self.peak = max(self.peak, len(self.active))
        else:
            self.active.discard(name)


def in_flight_report(dask_scheduler: Any = None) -> tuple[int, int, int]:
    """(peak, seen, active now) of the InFlight plugin; for run_on_scheduler."""
    plugin = dask_scheduler.plugins[InFlight.name]
    return plugin.peak, plugin.seen, len(plugin.active)
