"""BlockingDetector and BlockingEvent (placeholder until the detector issue lands)."""

from __future__ import annotations

from typing import Any

__all__ = ["BlockingDetector", "BlockingEvent"]


class BlockingEvent:
    """Not built yet (issue 4)."""


class BlockingDetector:
    """Not built yet (issue 4)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("BlockingDetector is not built yet")
