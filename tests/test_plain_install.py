"""The documented decorator form with process pools works on a plain install, without cloudpickle.

`python3 dev.py test-plain` runs this file (and the process tests) in an
environment with the runtime dependencies and the test tools only; in the
full test environment, cloudpickle is switched off for these tests, since
its presence once hid exactly this failure.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import _plain_helpers as helpers

pytestmark = pytest.mark.anyio

PLAIN = os.environ.get("ASYNCBRIDGE_PLAIN_INSTALL") == "1"


@pytest.fixture(autouse=True)
def without_cloudpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    if PLAIN:
        assert importlib.util.find_spec("cloudpickle") is None, "the plain environment must not have cloudpickle"
        return
    import sys

    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # import cloudpickle now raises ImportError
    from asyncbridge._processes import pickling

    monkeypatch.setattr(pickling, "_cloudpickle", lambda: None)


CALLS: list[tuple[str, Callable[[], Awaitable[tuple[int, int]]], int]] = [
    ("ProcessExecutor, function", lambda: helpers.square(7), 49),
    ("ProcessExecutor, method", lambda: helpers.Shapes(3).area(), 9),
    ("ProcessExecutor, staticmethod", lambda: helpers.Shapes.cube(2), 8),
    ("ProcessPoolExecutor, function", lambda: helpers.stdlib_square(7), 49),
    ("ProcessPoolExecutor, method", lambda: helpers.Shapes(3).stdlib_area(), 9),
    ("ProcessPoolExecutor, staticmethod", lambda: helpers.Shapes.stdlib_cube(2), 8),
]


@pytest.mark.parametrize(("call", "expected"), [pytest.param(c, e, id=i) for i, c, e in CALLS])
async def test_the_decorated_function_runs_in_a_worker_process(
    call: Callable[[], Awaitable[Any]], expected: int
) -> None:
    result, pid = await call()
    assert result == expected
    assert pid != os.getpid()
