"""Foreign executors get only the function and its arguments, unless they are plain thread pools."""

from __future__ import annotations

import concurrent.futures as cf
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest

from asyncbridge import async_wrap

pytestmark = pytest.mark.anyio


class PicklingThreadPool(cf.ThreadPoolExecutor):
    """Like 3.14's InterpreterPoolExecutor: a ThreadPoolExecutor subclass that pickles each call it is given."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        sent = pickle.loads(pickle.dumps((fn, args, kwargs)))
        return super().submit(sent[0], *sent[1], **sent[2])


def double(x: int) -> tuple[int, str]:
    return x * 2, threading.current_thread().name


async def test_a_thread_pool_subclass_that_pickles_gets_the_function_not_a_call_object() -> None:
    with PicklingThreadPool(1, thread_name_prefix="pickling") as pool:
        result, thread = await async_wrap(executor=pool)(double)(21)
    assert result == 42
    assert thread.startswith("pickling")


async def test_a_plain_thread_pool_runs_the_call_itself_so_check_cancelled_and_context_work() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    with cf.ThreadPoolExecutor(1) as pool:
        assert await async_wrap(executor=pool)(var.get)() == "caller"
