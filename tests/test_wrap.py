"""async_wrap and to_thread: results, errors, signatures, methods, generators, timeouts, cancellation."""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from _sync import wait_thread_event
from asyncbridge import ThreadExecutor, async_wrap, to_thread

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


# -- the classic recipe: one thread per concurrent call -------------------------


async def test_default_executor_runs_17_sleeps_on_17_threads() -> None:
    """17 concurrent 0.1 s sleeps through @async_wrap() run on 17 distinct threads."""

    @async_wrap()
    def sleep_and_report() -> int:
        time.sleep(0.1)
        return threading.get_ident()

    idents: list[int] = []

    async def one() -> None:
        idents.append(await sleep_and_report())

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(17):
            tg.start_soon(one)
    assert len(set(idents)) == 17
    assert threading.get_ident() not in idents
    assert time.monotonic() - started < 1.5  # concurrent, not 1.7 s of serial sleeps


# -- results, errors, metadata ---------------------------------------------------


async def test_returns_result_and_passes_arguments() -> None:
    """The wrapped function gets positional and keyword arguments and its result comes back."""

    @async_wrap
    def combine(a: int, b: int, *, sep: str = "-") -> str:
        return f"{a}{sep}{b}@{threading.get_ident()}"

    text = await combine(1, 2, sep="+")
    value, ident = text.split("@")
    assert value == "1+2"
    assert int(ident) != threading.get_ident()


def _raise_here() -> None:
    raise KeyError("the original")


async def test_reraises_the_same_exception_with_its_traceback() -> None:
    """The exception the function raised is re-raised: the same object, the raising frame in its traceback."""
    seen: list[BaseException] = []

    @async_wrap
    def fail() -> None:
        try:
            _raise_here()
        except KeyError as exc:
            seen.append(exc)
            raise

    with pytest.raises(KeyError) as info:
        await fail()
    assert info.value is seen[0]
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "_raise_here" in frames


async def test_keeps_name_doc_wrapped_and_signature() -> None:
    """The wrapper keeps __name__, __qualname__, __doc__, __wrapped__ and the signature, and is a coroutine function."""

    def original(x: int, /, y: str = "a", *args: int, z: float, **kw: Any) -> list[str]:
        """Original docstring."""
        return [y]

    wrapped = async_wrap(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__qualname__ == original.__qualname__
    assert wrapped.__doc__ == "Original docstring."
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped(1, z=2.0) == ["a"]


async def test_bare_and_called_forms_behave_alike() -> None:
    """@async_wrap, @async_wrap() and @async_wrap(executor=...) all make awaitable functions."""

    def double(x: int) -> int:
        return 2 * x

    with ThreadExecutor(2) as executor:
        forms = [async_wrap(double), async_wrap()(double), async_wrap(executor=executor)(double)]
        assert [await form(21) for form in forms] == [42, 42, 42]
        assert executor.statistics().completed == 1


async def test_context_variables_are_visible_in_the_thread() -> None:
    """A context variable set by the caller is visible inside the wrapped function and to_thread."""

    @async_wrap
    def read() -> str:
        return request_id.get()

    token = request_id.set("abc-123")
    try:
        assert await read() == "abc-123"
        assert await to_thread(request_id.get) == "abc-123"
    finally:
        request_id.reset(token)


async def test_context_changes_in_the_thread_do_not_leak_back() -> None:
    """A context variable set inside the function stays in the function's copy of the context."""

    @async_wrap
    def write() -> str:
        request_id.set("inside")
        return request_id.get()

    assert await write() == "inside"
    assert request_id.get() == "unset"


# -- methods ---------------------------------------------------------------------


class Repository:
    def __init__(self, name: str) -> None:
        self.name = name

    @async_wrap
    def fetch(self, key: str) -> str:
        return f"{self.name}:{key}"

    @classmethod
    @async_wrap
    def make(cls, name: str) -> Repository:
        return cls(name)

    @async_wrap
    @classmethod
    def make_outer(cls, name: str) -> Repository:
        return cls(name)

    @staticmethod
    @async_wrap
    def version() -> int:
        return threading.get_ident()

    @async_wrap
    @staticmethod
    def version_outer() -> int:
        return threading.get_ident()


async def test_methods_classmethods_and_staticmethods() -> None:
    """async_wrap works on methods, and on classmethods and staticmethods in either decorator order."""
    repo = Repository("db")
    assert await repo.fetch("k") == "db:k"
    assert (await Repository.make("x")).name == "x"
    assert (await Repository.make_outer("y")).name == "y"  # type: ignore[operator]
    assert await Repository.version() != threading.get_ident()
    assert await Repository.version_outer() != threading.get_ident()  # type: ignore[operator]
    assert inspect.iscoroutinefunction(Repository.fetch)


# -- generators --------------------------------------------------------------------


async def test_generator_becomes_async_generator_with_steps_in_threads() -> None:
    """A sync generator function becomes an async generator whose every step runs in a worker thread."""
    loop_thread = threading.get_ident()

    @async_wrap
    def numbers(n: int) -> Iterator[tuple[int, int]]:
        for i in range(n):
            yield i, threading.get_ident()

    assert inspect.isasyncgenfunction(numbers)
    items = [item async for item in numbers(5)]
    assert [i for i, _ in items] == [0, 1, 2, 3, 4]
    assert all(ident != loop_thread for _, ident in items)


async def test_generator_send_throw_and_return() -> None:
    """asend() and athrow() reach the generator, and its exceptions reach the consumer."""

    @async_wrap
    def echo() -> Any:
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except ValueError as exc:
                received = yield f"caught {exc}"
                raise RuntimeError("done") from None

    gen = echo()
    assert await gen.asend(None) == "ready"
    assert await gen.asend(1) == "got 1"
    assert await gen.athrow(ValueError("x")) == "caught x"
    with pytest.raises(RuntimeError, match="done"):
        await gen.asend(None)


async def test_generator_closed_early_runs_its_finally_in_a_worker() -> None:
    """Leaving an async for early closes the generator, running its cleanup in a worker thread."""
    closed = threading.Event()
    close_thread: list[int] = []

    @async_wrap
    def rows() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            close_thread.append(threading.get_ident())
            closed.set()

    gen = rows()
    async for row in gen:
        if row == 2:
            break
    await gen.aclose()
    await wait_thread_event(closed)
    assert close_thread[0] != threading.get_ident()


async def test_generator_aclose_waits_for_its_cleanup() -> None:
    """await agen.aclose() returns only after the sync generator's finally has run."""
    closed: list[bool] = []

    @async_wrap
    def resource() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            time.sleep(0.05)
            closed.append(True)

    gen = resource()
    assert await gen.__anext__() == 1
    await gen.aclose()
    assert closed == [True]


async def test_generator_cancelled_mid_step_is_closed_in_a_worker(caplog: pytest.LogCaptureFixture) -> None:
    """A wrapped generator whose step was abandoned is closed in a worker once the step ends, with no error."""
    in_step = threading.Event()
    release = threading.Event()
    cleaned = threading.Event()
    cleanup_thread: list[str] = []

    @async_wrap
    def rows() -> Iterator[int]:
        try:
            yield 1
            in_step.set()
            release.wait(10)
            yield 2
        finally:
            cleanup_thread.append(threading.current_thread().name)
            cleaned.set()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for _ in rows():
                    pass

            tg.start_soon(consume)
            await wait_thread_event(in_step)
            scope.cancel()
    release.set()
    await wait_thread_event(cleaned)
    assert cleanup_thread[0] != threading.current_thread().name
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# -- bad input ---------------------------------------------------------------------


async def _coroutine_function() -> None:
    pass


async def _async_generator_function() -> Any:
    yield 1


def test_rejects_coroutine_function_at_decoration() -> None:
    """Wrapping a coroutine function is a TypeError that says to await it directly."""
    with pytest.raises(TypeError, match=r"'_coroutine_function' is a coroutine function, await it directly"):
        async_wrap(_coroutine_function)


def test_rejects_async_generator_function_at_decoration() -> None:
    """Wrapping an async generator function is a TypeError that says to iterate it directly."""
    with pytest.raises(TypeError, match=r"async generator function, iterate it with 'async for'"):
        async_wrap()(_async_generator_function)


def test_rejects_non_callable_at_decoration() -> None:
    """Wrapping something not callable is a TypeError naming what was passed."""
    with pytest.raises(TypeError, match=r"expects a sync function .*got int 42"):
        async_wrap(42)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"limit": 0}, ValueError, "limit must be at least 1"),
        ({"limit": "2"}, TypeError, "limit must be an int"),
        ({"limit": True}, TypeError, "limit must be an int"),
        ({"timeout": 0}, ValueError, "timeout must be a positive number"),
        ({"timeout": -1.5}, ValueError, "timeout must be a positive number"),
        ({"timeout": "1"}, TypeError, "timeout must be a number"),
        ({"executor": "pool"}, TypeError, "executor must be None, an asyncbridge executor"),
        ({"abandon_on_cancel": "yes"}, TypeError, "abandon_on_cancel must be True or False"),
    ],
)
def test_rejects_bad_options(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    """Each bad option is rejected when async_wrap(...) is called, naming the argument."""
    with pytest.raises(error, match=message):
        async_wrap(**kwargs)


# -- timeout and cancellation --------------------------------------------------------


async def test_timeout_raises_builtin_timeout_error_and_keeps_the_slot() -> None:
    """timeout=S fails the await with TimeoutError after S seconds; the thread keeps its slot until done."""
    release = threading.Event()
    with ThreadExecutor(1) as executor:

        @async_wrap(executor=executor, timeout=0.1)
        def stuck() -> None:
            release.wait(10)

        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await stuck()
        assert time.monotonic() - started < 5
        assert executor.statistics().running == 1
        release.set()


async def test_timeout_without_abandoning_waits_then_raises_timeout_error() -> None:
    """timeout= with abandon_on_cancel=False waits for the thread, then raises TimeoutError, on every backend."""

    @async_wrap(timeout=0.05, abandon_on_cancel=False)
    def slow() -> str:
        time.sleep(0.3)
        return "result"

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await slow()
    assert time.monotonic() - started >= 0.25  # it waited for the thread


@pytest.mark.parametrize("how", ["cancel_scope", "fail_after"])
async def test_cancel_ends_await_promptly_and_keeps_slot(how: str) -> None:
    """A cancelled or timed-out await ends at once; the function runs on and its thread stays counted."""
    release = threading.Event()
    started = threading.Event()
    finished = threading.Event()
    with ThreadExecutor(1) as executor:

        @async_wrap(executor=executor)
        def stuck() -> None:
            started.set()
            release.wait(10)
            finished.set()

        if how == "cancel_scope":
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stuck)
                    await wait_thread_event(started)
                    scope.cancel()
        else:

            async def expire_once_started(deadline: anyio.CancelScope) -> None:
                await wait_thread_event(started)
                deadline.deadline = anyio.current_time()  # time is up, mid-call

            async def timed_out() -> None:
                with anyio.fail_after(10) as deadline:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(expire_once_started, deadline)
                        await stuck()

            with pytest.raises(TimeoutError):
                await timed_out()
        assert not finished.is_set()
        assert executor.statistics().running == 1
        release.set()
        await wait_thread_event(finished)


async def test_abandon_on_cancel_false_waits_for_the_thread() -> None:
    """With abandon_on_cancel=False a cancelled await returns only after the function has returned."""
    release = threading.Event()
    started = threading.Event()
    finished = threading.Event()

    @async_wrap(abandon_on_cancel=False)
    def stubborn() -> None:
        started.set()
        release.wait(10)
        finished.set()

    async def cancel_later(scope: anyio.CancelScope) -> None:
        await wait_thread_event(started)
        scope.cancel()
        await anyio.wait_all_tasks_blocked()  # an await that ignored abandon_on_cancel=False has returned by now
        release.set()

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(cancel_later, scope)
            await stubborn()
        assert finished.is_set()
