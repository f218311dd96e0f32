"""function_reference: a decorated module-level function travels by name, and finds the original behind its wrappers."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from typing import Any

import _plain_helpers as helpers
from asyncbridge._reference import FunctionReference, function_reference


def plain(x: int) -> int:
    return x + 1


def passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def test_a_function_its_name_finds_is_sent_as_itself() -> None:
    assert function_reference(plain) is plain
    assert function_reference(len) is len


def test_lambdas_and_closures_are_left_to_pickle() -> None:
    def inner() -> None: ...

    double = lambda x: x * 2  # noqa: E731
    assert function_reference(double) is double
    assert function_reference(inner) is inner


def test_the_original_behind_an_async_wrap_is_sent_by_name_and_found_again() -> None:
    original = helpers.square.__wrapped__  # type: ignore[attr-defined]
    reference = function_reference(original)
    assert isinstance(reference, FunctionReference)
    assert (reference.module, reference.qualname, reference.unwrap) == ("_plain_helpers", "square", 1)
    sent = pickle.loads(pickle.dumps(reference))
    assert sent.resolve() is original
    assert sent(3)[0] == 9


def test_methods_and_staticmethods_of_module_level_classes_are_found_by_their_qualified_name() -> None:
    area = function_reference(helpers.Shapes.area.__wrapped__)  # type: ignore[attr-defined]
    cube = function_reference(helpers.Shapes.cube.__wrapped__)  # type: ignore[attr-defined]
    assert (area.qualname, cube.qualname) == ("Shapes.area", "Shapes.cube")
    assert area(helpers.Shapes(4))[0] == 16
    assert cube(3)[0] == 27


def test_several_wrappers_are_counted() -> None:
    global stacked
    original = plain
    stacked = passthrough(passthrough(original))
    stacked.__qualname__ = "stacked"
    original_qualname = original.__qualname__
    try:
        original.__qualname__ = "stacked"  # as if the decorated function were defined under this name
        reference = function_reference(original)
        assert isinstance(reference, FunctionReference)
        assert reference.unwrap == 2
        assert reference.resolve() is original
    finally:
        original.__qualname__ = original_qualname


stacked: Any = None
