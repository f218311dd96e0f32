"""The public namespace: everything users need is in asyncbridge.__all__, and nothing else leaks."""

from __future__ import annotations

import types

import asyncbridge


def test_all_is_sorted_complete_and_resolvable() -> None:
    """__all__ has no duplicates, names only objects that exist, and lists every public name (ruff keeps it sorted)."""
    assert len(set(asyncbridge.__all__)) == len(asyncbridge.__all__)
    for name in asyncbridge.__all__:
        assert hasattr(asyncbridge, name), name
    public = {
        name
        for name, value in vars(asyncbridge).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert public == set(asyncbridge.__all__)


def test_public_objects_report_the_public_module() -> None:
    """Classes and functions show asyncbridge as their module, not the private one that defines them."""
    for name in asyncbridge.__all__:
        value = getattr(asyncbridge, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__ == "asyncbridge", name


def test_every_exception_derives_from_asyncbridge_error() -> None:
    """Every exception asyncbridge defines is an AsyncBridgeError, so one except clause catches them all."""
    errors = [getattr(asyncbridge, n) for n in asyncbridge.__all__ if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, asyncbridge.AsyncBridgeError) for e in errors)
