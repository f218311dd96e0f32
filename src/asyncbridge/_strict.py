"""Strict mode's machinery: patch the known blocking calls, and check each one a watched loop thread makes.

While at least one :class:`~asyncbridge.BlockingDetector` with ``strict=...``
is active, the calls listed in ``_strict_rules.RULES`` are replaced by thin
wrappers. In every thread but a watched event loop thread a wrapper costs one
dict lookup and calls through, so worker threads (asyncbridge's own, anyio's,
trio's, ``run_in_executor``'s) are never reported. On a watched loop thread it
asks the rule whether this call can block at all, then looks for an allow rule
matching a frame of the calling stack, and only then reports (runs the call,
timing it) or raises :class:`BlockingCallError`.

Module functions and methods of Python classes are replaced with ``setattr``.
Methods of built-in types (locks, the ``io`` classes, ``sqlite3``) cannot be
set that way; they are written into the type's own dict and the type's method
cache is invalidated with ``PyType_Modified``, as blockbuster does through
forbiddenfruit. Where that is impossible (not CPython) those rules are skipped.

Which calls are patched, and when they cannot block, is ``_strict_rules.py``.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal, cast

from ._detector_event import BlockingEvent, frame_summaries
from ._exceptions import BlockingCallError
from ._strict_rules import RULES, AllowRule, Rule, frame_matches

__all__ = ["STRICT_ACTIONS", "StrictState", "register", "unregister"]

logger = logging.getLogger("asyncbridge.blocking")

STRICT_ACTIONS = ("report", "raise")


# -- which threads are watched -----------------------------------------------------


@dataclass(eq=False)
class StrictState:
    """One strict detector's settings, and what it saw, on one loop thread."""

    action: Literal["report", "raise"]
    version: int
    allow: tuple[AllowRule, ...]
    record: Callable[[BlockingEvent], None]
    task_name: Callable[[], str | None]
    thread_name: str
    # For trio: the run's unrolled_run frame. Calls made outside it are not the run's
    # (in guest mode the same thread also runs the host loop, and waits there).
    run_frame: FrameType | None = None
    matched: set[str] = field(default_factory=set[str])

    def allowed(self, rule: Rule, frames: list[FrameType]) -> bool:
        if rule.since > self.version:
            return True  # not a rule of the version this detector asked for
        run_frame = self.run_frame
        if run_frame is not None and not any(f is run_frame for f in frames):
            return True  # not made by the watched run: trio's host loop, in guest mode
        for allow in self.allow:
            if allow.allows(rule) and any(frame_matches(allow.module, allow.function, f) for f in frames):
                self.matched.add(allow.text)
                return True
        return False


# Thread id -> the strict states active on that event loop thread. Replaced, never
# mutated, so the wrappers read it without a lock.
_watched: dict[int, tuple[StrictState, ...]] = {}
_registry_lock = threading.Lock()
_patches: list[_Patch] = []


class _Local(threading.local):
    busy = False


_local = _Local()


def register(thread_id: int, state: StrictState) -> None:
    """Start checking calls made on ``thread_id`` for ``state``; patch the calls if first."""
    global _watched
    with _registry_lock:
        if not _patches:
            _patch_all()
        watched = dict(_watched)
        watched[thread_id] = (*watched.get(thread_id, ()), state)
        _watched = watched


def unregister(thread_id: int, state: StrictState) -> None:
    """Stop checking for ``state``; restore the original calls once nobody is strict."""
    global _watched
    with _registry_lock:
        watched = dict(_watched)
        states = tuple(s for s in watched.get(thread_id, ()) if s is not state)
        if states:
            watched[thread_id] = states
        else:
            watched.pop(thread_id, None)
        _watched = watched
        if not watched:
            _unpatch_all()


# -- the wrappers ------------------------------------------------------------------


def _check(rule: Rule, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    local = _local
    if local.busy:  # a call made by a call we are already looking at (or by us)
        return original(*args, **kwargs)
    local.busy = True
    try:
        states = _watched.get(_thread.get_ident(), ())
        try:
            harmless = rule.cannot_block is not None and rule.cannot_block(*args, **kwargs)
        except Exception:  # e.g. a closed file: the call itself will say so
            harmless = True
        if harmless or not states:
            return original(*args, **kwargs)
        frames: list[FrameType] = []
        # The caller of the patched call.
        frame: FrameType | None = sys._getframe(2)  # pyright: ignore[reportPrivateUsage]
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back
        del frame
        if _allowed_by_rule_set(rule, frames):
            return original(*args, **kwargs)
        offended = [state for state in states if not state.allowed(rule, frames)]
        if not offended:
            return original(*args, **kwargs)
        stack = frame_summaries(
            [(f.f_code.co_filename, f.f_lineno or f.f_code.co_firstlineno, f.f_code.co_name) for f in reversed(frames)],
            lookup_lines=False,  # read the source lines later, in the watchdog thread
        )
        caller = frames[0]
        frames.clear()
        del frames
        task_name = offended[0].task_name()
        started = time.time()
        if any(state.action == "raise" for state in offended):
            event = BlockingEvent(0.0, stack, task_name, started, rule.name, offended[0].thread_name)
            for state in offended:
                state.record(event)
            raise BlockingCallError(_refusal(rule, event, caller))
        start = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            event = BlockingEvent(time.monotonic() - start, stack, task_name, started, rule.name,
                                  offended[0].thread_name)  # fmt: skip
            for state in offended:
                state.record(event)
    finally:
        local.busy = False


def _allowed_by_rule_set(rule: Rule, frames: list[FrameType]) -> bool:
    for module, functions in rule.allowed_in:
        for frame in frames:
            if frame_matches(module, None, frame) and (not functions or frame.f_code.co_name in functions):
                return True
    return False


def _refusal(rule: Rule, event: BlockingEvent, caller: FrameType) -> str:
    module = caller.f_globals.get("__name__", "your.module")
    task = "" if event.task_name is None else f" (task {event.task_name!r})"
    return (
        f"{rule.name}() called on the event loop thread{task} at "
        f"{caller.f_code.co_filename}:{caller.f_lineno}: it blocks every other task while it runs. "
        f"Run it in a worker thread (await asyncbridge.to_thread(...), or decorate the function with "
        f"@asyncbridge.async_wrap), or allow it: BlockingDetector(strict=..., allow=['{rule.name}@{module}'])"
    )


def _make_wrapper(rule: Rule, original: Callable[..., Any]) -> Callable[..., Any]:
    get_ident = _thread.get_ident

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if get_ident() not in _watched:  # not a watched event loop thread: call through
            return original(*args, **kwargs)
        return _check(rule, original, args, kwargs)

    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(wrapper, name, getattr(original, name))
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper._asyncbridge_rule = rule.name  # type: ignore[attr-defined]
    return wrapper


# -- patching ----------------------------------------------------------------------

_MISSING = object()


@dataclass
class _Patch:
    owner: Any
    attribute: str
    saved: Any  # the value in the owner's own dict, or _MISSING if it was inherited
    builtin: bool


def _resolve(target: str) -> Any:
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(target)


def _type_dict(cls: type) -> dict[str, Any]:
    import gc

    referents: list[Any] = gc.get_referents(cls.__dict__)  # a mappingproxy refers to the real dict
    if len(referents) != 1 or type(referents[0]) is not dict:
        raise TypeError(f"cannot reach the dict of {cls!r}")
    return cast("dict[str, Any]", referents[0])


def _set_builtin(cls: type, attribute: str, value: Any) -> None:
    import ctypes

    real = _type_dict(cls)
    if value is _MISSING:
        real.pop(attribute, None)
    else:
        real[attribute] = value
    ctypes.pythonapi.PyType_Modified(ctypes.py_object(cls))


def _patch_all() -> None:
    for rule in RULES:
        try:
            owner = _resolve(rule.target)
            original = getattr(owner, rule.attribute)
        except (ImportError, AttributeError):  # e.g. Python built without sqlite3 or ssl
            logger.debug("strict mode: %s is not available here; rule skipped", rule.name)
            continue
        saved = owner.__dict__.get(rule.attribute, _MISSING)
        wrapper = _make_wrapper(rule, original)
        try:
            setattr(owner, rule.attribute, wrapper)
            builtin = False
        except TypeError:
            if sys.implementation.name != "cpython":
                logger.debug("strict mode: cannot patch %s on %s", rule.name, sys.implementation.name)
                continue
            _set_builtin(owner, rule.attribute, wrapper)
            builtin = True
        _patches.append(_Patch(owner, rule.attribute, saved, builtin))


def _unpatch_all() -> None:
    while _patches:
        patch = _patches.pop()
        if patch.builtin:
            _set_builtin(patch.owner, patch.attribute, patch.saved)
        elif patch.saved is _MISSING:
            delattr(patch.owner, patch.attribute)
        else:
            setattr(patch.owner, patch.attribute, patch.saved)
