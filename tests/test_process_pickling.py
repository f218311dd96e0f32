"""Sending calls, results and exceptions between processes: what cannot cross fails at once, naming it;
cloudpickle sends functions by value."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest

import _process_helpers as helpers
from _process_testing import DISABLE_CLOUDPICKLE, TESTS_DIR, disable_cloudpickle
from asyncbridge import ProcessExecutor


@pytest.fixture
def no_cloudpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave as if cloudpickle were not installed."""
    disable_cloudpickle(monkeypatch)


# -- what cannot be pickled or unpickled --------------------------------------------------


def test_unpicklable_initializer_is_rejected_at_once(no_cloudpickle: None) -> None:
    """An initializer that cannot be sent to workers fails when the executor is made, naming it."""
    with pytest.raises(pickle.PicklingError, match=r"cannot send the initializer .*<lambda>.* at module level"):
        ProcessExecutor(initializer=lambda: None)


@pytest.mark.anyio
async def test_unpicklable_function_fails_at_once_naming_it(no_cloudpickle: None) -> None:
    """A lambda raises PicklingError at once, naming it and the fix; no worker is started."""
    async with ProcessExecutor(1) as executor:
        started = time.monotonic()
        with pytest.raises(pickle.PicklingError, match=r"cannot send the function .*<lambda>\(\).* at module level"):
            await executor.run(lambda: 1)
        assert time.monotonic() - started < 1
        assert executor.statistics().workers == 0
        assert await executor.run(helpers.add, 1) == 1


@pytest.mark.anyio
async def test_unpicklable_argument_fails_at_once_naming_it() -> None:
    """An argument that cannot be pickled raises TypeError naming its position and type; the
    worker is not touched."""
    async with ProcessExecutor(1) as executor:
        pid = await executor.run(helpers.getpid)
        lock = threading.Lock()
        with pytest.raises(TypeError, match=r"cannot send positional argument 1 \(a _thread.lock\)"):
            await executor.run(helpers.add, 1, lock)
        with pytest.raises(TypeError, match=r"cannot send keyword argument 'b' \(a _thread.lock\)"):
            await executor.run(helpers.add, 1, b=lock)
        assert executor.statistics().running == 0
        assert await executor.run(helpers.getpid) == pid


def test_submit_raises_pickling_errors_at_once() -> None:
    """submit() raises a pickling error itself, instead of returning a Future that hangs or fails later."""
    with ProcessExecutor(1) as executor:
        with pytest.raises(TypeError, match=r"_thread.lock"):
            executor.submit(helpers.return_argument, threading.Lock())
        assert executor.statistics().workers == 0


@pytest.mark.anyio
async def test_unpicklable_result_fails_the_call_not_the_worker() -> None:
    """A result that cannot be pickled raises TypeError naming its type; the worker serves on."""
    async with ProcessExecutor(1) as executor:
        pid = await executor.run(helpers.getpid)
        with pytest.raises(TypeError, match=r"the result of make_lock\(\) could not be sent back.*_thread.lock"):
            await executor.run(helpers.make_lock)
        assert await executor.run(helpers.getpid) == pid


@pytest.mark.anyio
async def test_call_the_worker_cannot_unpickle_fails_clearly() -> None:
    """A call whose pickle the worker cannot load (a class only the parent has) raises
    UnpicklingError saying so; the worker serves on."""
    ghost = types.ModuleType("ghost_module_only_in_the_test_process")
    ghost_class = type("Ghost", (), {"__module__": ghost.__name__})
    ghost.Ghost = ghost_class  # type: ignore[attr-defined]
    sys.modules[ghost.__name__] = ghost
    try:
        async with ProcessExecutor(1) as executor:
            pid = await executor.run(helpers.getpid)
            with pytest.raises(pickle.UnpicklingError, match=r"could not unpickle the call.*ghost_module"):
                await executor.run(helpers.return_argument, ghost_class())
            assert await executor.run(helpers.getpid) == pid
    finally:
        del sys.modules[ghost.__name__]


@pytest.mark.anyio
async def test_exception_that_cannot_cross_becomes_a_runtime_error_that_names_it() -> None:
    """An exception that cannot be unpickled arrives as a RuntimeError naming its type and message."""
    async with ProcessExecutor(1) as executor:
        with pytest.raises(RuntimeError, match=r"NeedsTwoArguments: code 7: stuck") as info:
            await executor.run(helpers.raise_needs_two_arguments)
        assert "raise NeedsTwoArguments(7" in str(info.value.__cause__)


# -- functions sent by value with cloudpickle ---------------------------------------------


@pytest.mark.anyio
async def test_lambdas_and_closures_are_sent_by_value_with_cloudpickle() -> None:
    """With cloudpickle installed, lambdas and closures (and lambda results) cross to workers."""
    pytest.importorskip("cloudpickle")
    offset = 10

    def closure(x: int) -> int:
        return x + offset

    async with ProcessExecutor(1) as executor:
        assert await executor.run(lambda: os.getpid()) != os.getpid()
        assert await executor.run(closure, 5) == 15
        made = await executor.run(helpers.return_argument, lambda y: y * 2)
        assert made(4) == 8


def test_map_chunks_send_closures_by_value_with_cloudpickle() -> None:
    """map(..., chunksize=n) sends a closure by value with cloudpickle, as a single call does."""
    pytest.importorskip("cloudpickle")
    offset = 10

    def closure(x: int) -> int:
        return x + offset

    with ProcessExecutor(1) as executor:
        assert list(executor.map(closure, range(5), chunksize=2)) == [10, 11, 12, 13, 14]


def test_map_chunks_refuse_a_closure_without_cloudpickle_naming_it(no_cloudpickle: None) -> None:
    """Without cloudpickle, map(..., chunksize=n) refuses a closure at once, naming it, as a single call does."""
    offset = 10

    def closure(x: int) -> int:
        return x + offset

    with ProcessExecutor(1) as executor, pytest.raises(pickle.PicklingError, match=r"the function .*closure"):
        executor.map(closure, range(5), chunksize=2)


@pytest.mark.parametrize("cloudpickle_installed", [False, True])
def test_functions_of_an_interactive_main_module(cloudpickle_installed: bool) -> None:
    """A function defined interactively (python -c, a REPL) is sent by value with cloudpickle, and
    without it fails at once with a PicklingError that says why."""
    if cloudpickle_installed:
        pytest.importorskip("cloudpickle")
    script = textwrap.dedent(
        f"""
        import asyncio, pickle
        import asyncbridge
        if not {cloudpickle_installed}:
            {DISABLE_CLOUDPICKLE}
        def interactive(x):
            return x * 3
        async def main():
            try:
                print(await asyncbridge.to_process(interactive, 5))
            except pickle.PicklingError as exc:
                print("PicklingError:", exc)
        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=TESTS_DIR)
    assert done.returncode == 0, done.stderr
    if cloudpickle_installed:
        assert done.stdout.strip() == "15"
    else:
        assert "PicklingError: cannot send the function interactive() to a worker process" in done.stdout
        assert "defined in an interactive session" in done.stdout
