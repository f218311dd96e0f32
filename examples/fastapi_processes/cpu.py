"""The app's CPU-bound work, in a module of its own: a worker process imports this, not FastAPI (docs/fastapi.md)."""

from __future__ import annotations

import os


def count_primes(below: int) -> dict[str, int]:
    """Count the primes below ``below`` by trial division: pure Python, which holds the GIL all along."""
    primes = sum(1 for n in range(2, below) if all(n % d for d in range(2, int(n**0.5) + 1)))
    return {"below": below, "primes": primes, "worker_pid": os.getpid()}
