"""asyncbridge: bridge synchronous and asynchronous Python, on asyncio, uvloop and trio.

Users import from here only; every implementation module is private.
"""

from __future__ import annotations

from ._call import check_cancelled
from ._detector import BlockingDetector
from ._detector_event import BlockingEvent
from ._exceptions import (
    AsyncBridgeError,
    BlockingCallError,
    ExecutorShutdownError,
    WorkerCrashedError,
    WorkerStartError,
)
from ._limit import CapacityLimiter, CapacityLimiterStatistics
from ._pinned import pinned_thread
from ._portal import sync_wrap
from ._processes import ProcessExecutor, get_default_process_executor, set_default_process_executor, to_process
from ._statistics import ExecutorStatistics
from ._threads import DEFAULT_MAX_THREADS, ThreadExecutor, get_default_executor, set_default_executor
from ._wrap import async_wrap, limiter_of, to_thread

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_MAX_THREADS",
    "AsyncBridgeError",
    "BlockingCallError",
    "BlockingDetector",
    "BlockingEvent",
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "ExecutorShutdownError",
    "ExecutorStatistics",
    "ProcessExecutor",
    "ThreadExecutor",
    "WorkerCrashedError",
    "WorkerStartError",
    "async_wrap",
    "check_cancelled",
    "get_default_executor",
    "get_default_process_executor",
    "limiter_of",
    "pinned_thread",
    "set_default_executor",
    "set_default_process_executor",
    "sync_wrap",
    "to_process",
    "to_thread",
]


def _set_public_module() -> None:
    """Show the public path in reprs, tracebacks and docs, not the private module."""
    namespace = globals()
    for name in __all__:
        obj = namespace[name]
        if isinstance(obj, type) or callable(obj):
            obj.__module__ = __name__


_set_public_module()
del _set_public_module
