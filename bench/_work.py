"""Functions that run in worker processes; a module of their own so every start method can import them."""

from __future__ import annotations

import time


def echo(value: int) -> int:
    return value


def spin(iterations: int) -> float:
    """Burn CPU in pure Python (the GIL held throughout); return the seconds it took."""
    start = time.perf_counter()
    total = 0
    for i in range(iterations):
        total += i * i
    return time.perf_counter() - start


def calibrate(seconds: float) -> int:
    """How many ``spin`` iterations take about ``seconds`` here."""
    n = 200_000
    while True:
        took = spin(n)
        if took > 0.05:
            return int(n * seconds / took)
        n *= 2
