"""ExecutorStatistics: what an asyncbridge executor reports about itself."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExecutorStatistics"]


@dataclass(frozen=True)
class ExecutorStatistics:
    """A snapshot of an executor's state, from ``executor.statistics()``.

    A saturated pool shows as ``running == max_workers`` with ``queued`` above
    zero and a growing ``max_wait_time``.

    Attributes:
        max_workers: the bound on workers running calls at once.
        workers: worker threads or processes alive now, busy or idle.
        running: calls running now.
        queued: calls waiting for a free worker.
        completed: calls that have finished, successfully or not.
        failed: of those, the calls that raised.
        total_wait_time: seconds calls spent queued for a worker, summed.
        max_wait_time: the longest any call waited for a worker, in seconds.

    Example:
        ```python
        from asyncbridge import ThreadExecutor

        with ThreadExecutor(max_workers=2) as executor:
            executor.submit(pow, 2, 3).result()
            stats = executor.statistics()
        assert (stats.max_workers, stats.completed, stats.failed, stats.queued) == (2, 1, 0, 0)
        ```
    """

    max_workers: int
    workers: int
    running: int
    queued: int
    completed: int
    failed: int
    total_wait_time: float
    max_wait_time: float
