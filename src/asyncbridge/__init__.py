"""asyncbridge: bridge synchronous and asynchronous Python, on asyncio, uvloop and trio.

Users import from here only; every implementation module is private.
"""

from __future__ import annotations

from ._detector import BlockingDetector, BlockingEvent
from ._exceptions import (
    AsyncBridgeError,
    BlockingCallError,
    ExecutorShutdownError,
    WorkerCrashedError,
    WorkerStartError,
)
from ._hub import check_cancelled
from ._processes import ProcessExecutor, to_process
from ._statistics import ExecutorStatistics
from ._threads import DEFAULT_MAX_THREADS, ThreadExecutor, get_default_executor, set_default_executor
from ._wrap import async_wrap, to_thread

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_MAX_THREADS",
    "AsyncBridgeError",
    "BlockingCallError",
    "BlockingDetector",
    "BlockingEvent",
    "ExecutorShutdownError",
    "ExecutorStatistics",
    "ProcessExecutor",
    "ThreadExecutor",
    "WorkerCrashedError",
    "WorkerStartError",
    "async_wrap",
    "check_cancelled",
    "get_default_executor",
    "set_default_executor",
    "to_process",
    "to_thread",
]

# Show the public path in reprs, tracebacks and docs, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("asyncbridge._"):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
