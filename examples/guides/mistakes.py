"""Three asyncio mistakes that popular explanations make, each run to show what really happens.

    python examples/guides/mistakes.py

1. ``asyncio.sleep(1)`` without ``await`` makes a coroutine object and sleeps
   not at all.
2. ``asyncio.run(asyncio.gather(...))`` fails before anything runs:
   ``asyncio.run`` takes a coroutine, and ``gather`` returns a future.
3. A decorator that takes the event loop when the module is imported (a
   ``loop=asyncio.get_event_loop()`` default) holds a loop that is not the one
   ``asyncio.run`` starts later: awaiting work through it fails.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from functools import partial, wraps
from typing import Any

ran: list[str] = []


async def job(name: str) -> None:
    await asyncio.sleep(0.01)
    ran.append(name)


async def sleep_without_await() -> float:
    started = time.perf_counter()
    pending = asyncio.sleep(1)  # the mistake: no await, so this only creates a coroutine object
    took = time.perf_counter() - started
    pending.close()  # (the interpreter would warn "coroutine 'sleep' was never awaited")
    return took


# 3. The recipe's shape, with the default taken at import time. Before Python 3.12,
# asyncio.get_event_loop() at import made a loop nobody runs; new_event_loop() does so on every version.
LOOP_AT_IMPORT = asyncio.new_event_loop()


def async_wrap_bound_at_import(func: Callable[..., Any], loop: asyncio.AbstractEventLoop = LOOP_AT_IMPORT) -> Any:
    @wraps(func)
    async def run(*args: Any) -> Any:
        return await loop.run_in_executor(None, partial(func, *args))

    return run


@async_wrap_bound_at_import
def add(a: int, b: int) -> int:
    return a + b


def main() -> None:
    took = asyncio.run(sleep_without_await())
    print(f"1. asyncio.sleep(1) without await returned after {took:.3f} s: it only made a coroutine object")

    coroutines = [job("a"), job("b")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # gather() outside a loop warns on 3.12 and 3.13
        try:
            asyncio.run(asyncio.gather(*coroutines))  # type: ignore[arg-type]
        except (ValueError, RuntimeError) as exc:  # ValueError: run() refuses a future; RuntimeError: no loop for it
            failure = type(exc).__name__
    for coroutine in coroutines:
        coroutine.close()
    print(f"2. asyncio.run(asyncio.gather(...)) raised {failure}; jobs that ran: {ran or 'none'}")
    print(f"   asyncio.run(main()) with main awaiting gather ran both: {asyncio.run(gather_in_a_coroutine())}")

    try:
        asyncio.run(add_through_the_import_loop())
    except RuntimeError as exc:
        reason = "got Future attached to a different loop" if "different loop" in str(exc) else str(exc)
        print(f"3. a decorator's loop taken at import: RuntimeError, {reason}")
    finally:
        LOOP_AT_IMPORT.close()


async def gather_in_a_coroutine() -> list[str]:
    ran.clear()
    await asyncio.gather(job("a"), job("b"))
    return sorted(ran)


async def add_through_the_import_loop() -> int:
    return await add(1, 2)


if __name__ == "__main__":
    main()
