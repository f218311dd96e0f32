"""Argument checks shared by the public API: counts and durations, with errors that say what to pass."""

from __future__ import annotations

import math
import threading

__all__ = ["MAX_SECONDS", "check_count", "check_seconds", "check_seconds_or_never"]

# The longest wait the platform's locks accept (threading.TIMEOUT_MAX, about
# 292 years on Linux); a longer duration cannot be waited for as such.
MAX_SECONDS = threading.TIMEOUT_MAX


def check_count(value: object, what: str) -> int:
    """Return ``value`` if it is an int of at least 1; else raise naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")
    return value


def check_seconds(value: object, what: str) -> float:
    """Return ``value`` as a float if it is a positive, finite number of seconds the platform can wait for.

    Raises:
        TypeError: not an int or float.
        ValueError: zero, negative, NaN, infinite, or above ``MAX_SECONDS``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if math.isnan(seconds) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
    if math.isinf(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{what} must be at most {MAX_SECONDS:.0f} seconds (threading.TIMEOUT_MAX), got {value!r}")
    return seconds


def check_seconds_or_never(value: object, what: str, never: str) -> float | None:
    """Like :func:`check_seconds`, but None, ``math.inf`` and anything above ``MAX_SECONDS`` mean never: None.

    ``never`` says what None means for this argument, for the error message.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_SECONDS:
        return None  # inf included: longer than any wait the platform can time
    try:
        return check_seconds(value, what)
    except TypeError:
        raise TypeError(f"{what} must be a number of seconds or None ({never}), got {value!r}") from None
    except ValueError:
        raise ValueError(f"{what} must be a positive number of seconds or None ({never}), got {value!r}") from None
