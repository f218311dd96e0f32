"""Module-level functions decorated for process pools, as docs/processes.md shows them (tests/test_plain_install.py)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os

from asyncbridge import ProcessExecutor, async_wrap

process_executor = ProcessExecutor(2)
stdlib_pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))


@async_wrap(executor=process_executor)
def square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@async_wrap(executor=stdlib_pool)
def stdlib_square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


class Shapes:
    def __init__(self, side: int) -> None:
        self.side = side

    @async_wrap(executor=process_executor)
    def area(self) -> tuple[int, int]:
        return self.side * self.side, os.getpid()

    @async_wrap(executor=stdlib_pool)
    def stdlib_area(self) -> tuple[int, int]:
        return self.side * self.side, os.getpid()

    @staticmethod
    @async_wrap(executor=process_executor)
    def cube(x: int) -> tuple[int, int]:
        return x**3, os.getpid()

    @staticmethod
    @async_wrap(executor=stdlib_pool)
    def stdlib_cube(x: int) -> tuple[int, int]:
        return x**3, os.getpid()
