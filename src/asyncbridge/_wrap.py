"""async_wrap and to_thread: await a sync function in an executor."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterator
from contextvars import Context, copy_context
from typing import Any, Protocol, TypeVar, cast, overload

import anyio
from typing_extensions import ParamSpec

from ._backends import current_inbox
from ._call import DROPPED, Call, CallExecutor
from ._checks import check_seconds_or_never
from ._exceptions import ExecutorShutdownError
from ._executor import ONE_OFF_THREADS, adapt_executor
from ._limit import CapacityLimiter
from ._threads import get_default_executor

__all__ = ["async_wrap", "limiter_of", "to_thread"]

_CancelledError = asyncio.CancelledError  # trio's Cancelled is handled inside its inbox

P = ParamSpec("P")
T = TypeVar("T")
Y = TypeVar("Y")
S = TypeVar("S")


class _AsyncWrapDecorator(Protocol):
    """What ``async_wrap(...)`` returns: the decorator, for functions and generators."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Generator[Y, S, Any]], /
    ) -> Callable[P, AsyncGenerator[Y, S]]: ...

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Iterator[Y]], /
    ) -> Callable[P, AsyncGenerator[Y, None]]: ...

    @overload
    def __call__(self, fn: Callable[P, T], /) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def async_wrap(  # type: ignore[overload-overlap]
    fn: Callable[P, Generator[Y, S, Any]], /
) -> Callable[P, AsyncGenerator[Y, S]]: ...


@overload
def async_wrap(  # type: ignore[overload-overlap]
    fn: Callable[P, Iterator[Y]], /
) -> Callable[P, AsyncGenerator[Y, None]]: ...


@overload
def async_wrap(fn: Callable[P, T], /) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def async_wrap(
    *,
    executor: cf.Executor | None = None,
    limit: int | CapacityLimiter | None = None,
    timeout: float | None = None,
    abandon_on_cancel: bool = True,
) -> _AsyncWrapDecorator: ...


def async_wrap(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    executor: cf.Executor | None = None,
    limit: int | CapacityLimiter | None = None,
    timeout: float | None = None,
    abandon_on_cancel: bool = True,
) -> Any:
    """Turn a sync function into an async one that runs it in an executor.

    Usable bare (``@async_wrap``) or called (``@async_wrap(limit=4)``).
    Awaiting the wrapped ``read_config("app.toml")`` is the same as
    ``await asyncio.to_thread(read_config, "app.toml")``, on
    asyncio, uvloop and trio alike, with the signature, name and docstring of
    the original kept (``__wrapped__`` points to it). The result is returned,
    or the exception the function raised is re-raised unchanged. Context
    variables set by the caller are visible in the function.

    A generator function becomes an async generator function whose every step
    (``next``, ``send``, ``throw``) runs in the executor. Methods,
    classmethods and staticmethods can be wrapped too.

    Args:
        fn: the sync function, in the bare form.
        executor: where calls run: ``None`` for the shared default
            :class:`ThreadExecutor` (see :func:`get_default_executor`), an
            asyncbridge executor, or any :class:`concurrent.futures.Executor`
            (such as ``ThreadPoolExecutor(max_workers=2)``).
        limit: at most this many calls of this function run at once, across
            every event loop and thread, whatever the executor; further calls
            wait their turn. A call abandoned by a cancelled caller keeps its
            place until its function really returns. An int makes a limit of
            the function's own; a :class:`CapacityLimiter` is shared with
            every function given it. Either way the wrapped function's
            limiter is :func:`limiter_of` it (None without a limit), whose
            ``statistics()`` show the calls waiting for it; it is also the
            function's ``limiter`` attribute, which type checkers cannot see.
        timeout: seconds after which a call fails with :class:`TimeoutError`,
            waiting for a ``limit`` slot included; the same as wrapping the
            await in ``anyio.fail_after(timeout)``, with a message naming
            the function. None, or ``math.inf``, for no timeout.
        abandon_on_cancel: when the awaiting task is cancelled (or times out)
            while the function runs, True (the default, as
            ``asyncio.to_thread``) ends the await at once and lets the function
            run on in its thread, logging any exception it raises later; False
            waits for the function to return first, as ``anyio.to_thread``
            and trio do by default. Either way the function can stop early by
            calling :func:`check_cancelled`, and a call that has not started yet
            is simply dropped.

    Returns:
        The async function (or async generator function), or in the called
        form a decorator that makes one.

    Raises:
        TypeError: ``fn`` is a coroutine function, an async generator function
            or not callable; or an argument has the wrong type.
        ValueError: ``limit`` is below 1 or ``timeout`` not positive.

    Example:
        ```python
        import threading
        from asyncbridge import async_wrap


        @async_wrap
        def read_config(path: str) -> dict[str, str]:  # blocking I/O, run in a worker thread
            return {"path": path, "thread": threading.current_thread().name}


        @async_wrap(limit=2, timeout=10)  # at most 2 at once; fail after 10 s
        def checksum(data: bytes) -> int:
            return sum(data) % 256


        config = await read_config("app.toml")
        assert config["thread"] != threading.current_thread().name
        assert await checksum(b"abc") == 38
        ```
    """
    adapter = adapt_executor(executor)
    limiter = _make_limiter(limit)
    timeout = _check_timeout(timeout)
    if not isinstance(abandon_on_cancel, bool):
        raise TypeError(f"abandon_on_cancel must be True or False, got {abandon_on_cancel!r}")

    def decorate(fn: Any) -> Any:
        return _decorate(fn, adapter, limiter, timeout, abandon_on_cancel)

    if fn is None:
        return decorate
    return decorate(fn)


async def to_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in the default thread executor and return its result.

    A drop-in for ``asyncio.to_thread`` that also works under trio, uses the
    bounded default :class:`ThreadExecutor` shared by every event loop, and
    copies the caller's context variables in. When the awaiting task is
    cancelled, the await ends at once and ``fn`` runs on; it can call
    :func:`check_cancelled` to stop early.

    Raises:
        BaseException: whatever ``fn`` raised, unchanged.

    Example:
        ```python
        import time
        from asyncbridge import to_thread

        await to_thread(time.sleep, 0.01)  # the event loop runs other tasks meanwhile
        assert await to_thread(sorted, [3, 1, 2], reverse=True) == [3, 2, 1]
        ```
    """
    call = Call(fn, args, kwargs, copy_context(), get_default_executor())
    inbox = current_inbox()
    try:
        await inbox.start(call)
    except _CancelledError as exc:
        await inbox.cancelled(call, exc)
    result: T = call.outcome()
    return result


# -- decoration -------------------------------------------------------------


def _name_of(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name else repr(fn)


def _describe(fn: object) -> str:
    """The function's name quoted, for messages about it (its repr if it has none)."""
    name = _name_of(fn)
    return repr(fn) if name == repr(fn) else repr(name)


def _decorate(
    fn: Any,
    adapter: CallExecutor | None,
    limiter: CapacityLimiter | None,
    timeout: float | None,
    abandon_on_cancel: bool,
) -> Any:
    if isinstance(fn, (classmethod, staticmethod)):
        descriptor = cast(Any, fn)
        inner = _decorate(descriptor.__func__, adapter, limiter, timeout, abandon_on_cancel)
        return type(descriptor)(inner)
    call_method = getattr(type(cast(object, fn)), "__call__", None)  # noqa: B004 (an object whose __call__ is async)
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call_method):
        raise TypeError(
            f"async_wrap() expects a sync function; {_describe(fn)} is a coroutine function, await it directly instead"
        )
    if inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"async_wrap() expects a sync function; {_describe(fn)} is an async generator "
            "function, iterate it with 'async for' directly instead"
        )
    if not callable(fn):
        raise TypeError(
            f"async_wrap() expects a sync function (or generator function), got "
            f"{type(fn).__name__} {fn!r}; use it as @async_wrap or @async_wrap(...) on a def"
        )
    if inspect.isgeneratorfunction(fn):
        return _wrap_generator(fn, adapter, limiter, timeout, abandon_on_cancel)
    return _wrap_function(fn, adapter, limiter, timeout, abandon_on_cancel)


def _wrap_function(
    fn: Callable[..., Any],
    adapter: CallExecutor | None,
    limiter: CapacityLimiter | None,
    timeout: float | None,
    abandon_on_cancel: bool,
) -> Callable[..., Coroutine[Any, Any, Any]]:
    # One closure per option set, so the common case does no branching per call.
    if limiter is None and timeout is None:
        # The hot path: await the inbox's future directly (one coroutine frame
        # per call, not two); cancellation takes the slow path.

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = Call(
                fn,
                args,
                kwargs,
                copy_context(),
                get_default_executor() if adapter is None else adapter,
                abandon_on_cancel,
            )
            inbox = current_inbox()
            try:
                await inbox.start(call)
            except _CancelledError as exc:
                await inbox.cancelled(call, exc)
            return call.outcome()

    else:

        async def run_limited(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            executor = get_default_executor() if adapter is None else adapter
            inbox = current_inbox()  # before taking a slot: it raises outside an event loop
            if limiter is None:
                call = Call(fn, args, kwargs, copy_context(), executor, abandon_on_cancel)
            else:
                await limiter.acquire()
                call = Call(fn, args, kwargs, copy_context(), executor, abandon_on_cancel, limiter.release)
            return await inbox.run(call)

        if timeout is None:

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await run_limited(args, kwargs)

        else:

            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                with anyio.CancelScope(deadline=anyio.current_time() + timeout):
                    return await run_limited(args, kwargs)
                # Only reached when the deadline cancelled the call (else the return ran).
                raise _timed_out(fn, timeout)

    wrapped = functools.wraps(fn)(wrapper)
    _remember_limiter(wrapped, limiter)
    return wrapped


def _gen_step(lock: threading.Lock, ctx: Context, method: Callable[[Any], Any], arg: Any) -> tuple[bool, Any]:
    # Runs in a worker. The lock keeps a step abandoned by a cancelled caller and
    # the final close() from running the generator at once; it is taken outside
    # the context, which only one thread at a time may enter.
    with lock:
        try:
            return False, ctx.run(method, arg)
        except StopIteration as stop:
            return True, stop.value


def _gen_close(lock: threading.Lock, ctx: Context, gen: Generator[Any, Any, Any]) -> None:
    with lock:
        ctx.run(gen.close)


def _close_later(executor: CallExecutor, lock: threading.Lock, ctx: Context, gen: Generator[Any, Any, Any]) -> None:
    """Close the generator in a worker without waiting; its errors are logged."""
    closing = Call(_gen_close, (lock, ctx, gen), {}, None, executor)
    try:
        executor.submit_call(closing)
    except ExecutorShutdownError:
        closing.executor = ONE_OFF_THREADS
        ONE_OFF_THREADS.submit_call(closing)


def _wrap_generator(
    fn: Callable[..., Generator[Any, Any, Any]],
    adapter: CallExecutor | None,
    limiter: CapacityLimiter | None,
    timeout: float | None,
    abandon_on_cancel: bool,
) -> Callable[..., AsyncGenerator[Any, Any]]:
    async def step(call: Call) -> Any:
        inbox = current_inbox()
        if limiter is not None:
            await limiter.acquire()
            call.on_done = limiter.release
        return await inbox.run(call)

    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        executor = get_default_executor() if adapter is None else adapter
        gen = fn(*args, **kwargs)
        # One context for the whole generator, as if it ran in the caller's
        # thread: what one step sets, the next sees.
        ctx = copy_context()
        lock = threading.Lock()
        method: Callable[[Any], Any] = gen.send
        arg: Any = None
        finished = stepping = False
        try:
            while True:
                call = Call(_gen_step, (lock, ctx, method, arg), {}, None, executor, abandon_on_cancel)
                stepping = True
                if timeout is None:
                    finished, value = await step(call)
                else:
                    finished, value = False, None
                    with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
                        finished, value = await step(call)
                    if scope.cancelled_caught:
                        raise _timed_out(fn, timeout, ", a step of the generator,")
                stepping = False
                if finished:
                    return
                try:
                    arg = yield value
                except GeneratorExit:
                    raise
                except BaseException as exc:  # athrow(): hand it to the generator
                    method, arg = gen.throw, exc
                else:
                    method = gen.send
        finally:
            if not finished:
                if stepping:
                    # A step was cut short (cancelled, or it raised): close once
                    # it is over, without awaiting, as trio allows no await here.
                    _close_later(executor, lock, ctx, gen)
                else:
                    # Suspended at a yield (aclose, break): wait for the cleanup.
                    closing = Call(_gen_close, (lock, ctx, gen), {}, None, executor)
                    try:
                        await current_inbox().run(closing)
                    except BaseException:
                        if closing.state == DROPPED:  # cancelled before it ran
                            _close_later(executor, lock, ctx, gen)
                        raise

    wrapped_gen = functools.wraps(fn)(wrapper)
    _remember_limiter(wrapped_gen, limiter)
    return wrapped_gen


# -- the limiter of a wrapped function -------------------------------------------------

# Every function async_wrap made, with its limiter: weak, so a wrapped function can be collected.
_LIMITERS: weakref.WeakKeyDictionary[Callable[..., Any], CapacityLimiter | None] = weakref.WeakKeyDictionary()


def _remember_limiter(wrapped: Callable[..., Any], limiter: CapacityLimiter | None) -> None:
    wrapped.limiter = limiter  # type: ignore[attr-defined]  # for the REPL; limiter_of is the typed way
    _LIMITERS[wrapped] = limiter


def limiter_of(fn: Callable[..., Any]) -> CapacityLimiter | None:
    """The :class:`CapacityLimiter` bounding a function made by :func:`async_wrap`, or None without ``limit=``.

    With ``limit=N`` the function has a limiter of its own; this is how to see
    it, typed (the ``limiter`` attribute holds the same object, but a type
    checker cannot know a decorated function has it). Methods work bound or
    not (``limiter_of(service.load)``), and so do functions wrapped again by
    decorators that use :func:`functools.wraps`.

    Raises:
        TypeError: ``fn`` was not made by :func:`async_wrap`.

    Example:
        ```python
        from asyncbridge import async_wrap, limiter_of


        @async_wrap(limit=4)
        def load_user(user_id: int) -> dict[str, str]:
            return {"id": str(user_id)}


        limiter = limiter_of(load_user)
        assert limiter is not None  # None: the function has no limit=
        stats = limiter.statistics()
        if stats.tasks_waiting:
            print(f"{stats.tasks_waiting} calls wait for load_user's limit of {stats.total_tokens}")
        assert stats.total_tokens == 4
        ```
    """
    seen: Any = fn
    for _ in range(100):  # a __wrapped__ chain that loops must not hang
        seen = getattr(seen, "__func__", seen)  # bound methods, classmethod and staticmethod objects
        try:
            return _LIMITERS[seen]
        except (KeyError, TypeError):  # not ours, or not weakly referable
            pass
        seen = getattr(seen, "__wrapped__", None)
        if seen is None:
            break
    raise TypeError(
        f"limiter_of() expects a function made by async_wrap(), got {_describe(fn)}; "
        "wrap it with @async_wrap(limit=...) first, or pass the CapacityLimiter you gave it"
    )


# -- argument checks ----------------------------------------------------------------


def _make_limiter(limit: object) -> CapacityLimiter | None:
    if limit is None or isinstance(limit, CapacityLimiter):
        return limit
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, a CapacityLimiter or None, got {type(limit).__name__} {limit!r}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1 (or None for no limit), got {limit}")
    return CapacityLimiter(limit)


def _check_timeout(timeout: object) -> float | None:
    return check_seconds_or_never(timeout, "timeout", "no timeout")


def _timed_out(fn: object, timeout: float, what: str = "") -> TimeoutError:
    """The TimeoutError a fired ``timeout=`` raises: which function, and how long it had."""
    return TimeoutError(f"{_name_of(fn)}(){what} did not finish within {timeout:g} s (async_wrap timeout=)")
