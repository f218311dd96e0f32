"""ProcessExecutor and to_process (placeholder until the process issue lands)."""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["ProcessExecutor", "to_process"]


class ProcessExecutor:
    """Not built yet (issue 3)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("ProcessExecutor is not built yet")


async def to_process(*args: Any, **kwargs: Any) -> NoReturn:
    """Not built yet (issue 3)."""
    raise NotImplementedError("to_process is not built yet")
