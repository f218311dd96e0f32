"""Functions that block in known ways, at known lines, for the detector's tests."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any


def spin(seconds: float) -> int:
    """Burn CPU for ``seconds``, holding the GIL, as a CPU-bound loop does."""
    deadline = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return spins


def nap(seconds: float) -> None:
    """Sleep for ``seconds``: the classic blocking call."""
    time.sleep(seconds)


def lines_of(fn: Callable[..., Any], text: str) -> set[int]:
    """Return the line numbers of ``fn``'s source lines that contain ``text``."""
    source, first = inspect.getsourcelines(fn)
    return {first + i for i, line in enumerate(source) if text in line}


SPIN_LINES = lines_of(spin, "spins") | lines_of(spin, "while")
NAP_LINE = next(iter(lines_of(nap, "time.sleep")))
