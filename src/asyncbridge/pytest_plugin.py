"""asyncbridge's pytest plugin: fail async tests that block their event loop.

Registered through the ``pytest11`` entry point, so installing asyncbridge is
enough. It loads for every user of asyncbridge and so does nothing at all
unless turned on:

- for every async test: ``--blocking-threshold=SECONDS`` on the command line,
  or ``blocking_threshold = SECONDS`` in the ini file;
- for one test (or a module, with ``pytestmark``): the
  ``@pytest.mark.blocking_detector(threshold=None, *, strict=None, allow=(),
  strict_rules=None, enabled=True)`` marker, or the ``blocking_detector``
  fixture, which also gives the test its :class:`~asyncbridge.BlockingDetector`.
  ``@pytest.mark.blocking_detector(enabled=False)`` turns it off for a test.

An async test (run by anyio's pytest plugin or pytest-asyncio) then runs under
a detector, and fails with the detector's report as its message if the event
loop was blocked longer than the threshold, or, with strict mode
(``--blocking-strict``, ``blocking_strict = report`` or the marker's
``strict=``), if it made a known blocking call. ``blocking_allow`` (one allow
rule per line) feeds strict mode; the ones that never matched are listed at the
end of the run. A block during which the loop thread mostly waited for a CPU
(``BlockingEvent.starved``: the machine was overloaded) does not fail the test
unless ``--blocking-fail-on-starvation`` (or ``blocking_fail_on_starvation =
true``) is given; such tests are listed at the end of the run. Only the test
function's body is watched, not its fixtures.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Literal

import pytest

from ._detector import DEFAULT_THRESHOLD, BlockingDetector
from ._detector_event import BlockingEvent

__all__ = ["blocking_detector"]

StrictOption = Literal[False, "report", "raise"]

MARKER = "blocking_detector"
_DETECTOR = pytest.StashKey[BlockingDetector]()
_SETTINGS = pytest.StashKey["_Settings"]()


class _Settings:
    """What the command line and the ini file asked for, and what strict mode's allow rules did."""

    def __init__(
        self, threshold: float | None, strict: StrictOption, allow: list[str], fail_on_starvation: bool = False
    ) -> None:
        self.threshold: float | None = threshold
        self.strict: StrictOption = strict
        self.allow: list[str] = allow
        self.fail_on_starvation = fail_on_starvation
        self.strict_used = False
        self.matched: set[str] = set()
        self.starved: list[str] = []  # the tests that saw only starved blocks, and so passed


def _threshold(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and seconds != float("inf")):
        raise ValueError(f"the blocking threshold must be a positive number of seconds, got {value!r}")
    return seconds


def _strict_option(value: str) -> StrictOption:
    lowered = value.strip().lower()
    if lowered in {"", "0", "false", "no", "off"}:
        return False
    if lowered in {"1", "true", "yes", "on", "report"}:
        return "report"
    if lowered == "raise":
        return "raise"
    raise ValueError(f"blocking strict mode must be false, report (or true) or raise, got {value!r}")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncbridge", "asyncbridge: fail async tests that block the event loop")
    group.addoption(
        "--blocking-threshold",
        metavar="SECONDS",
        default=None,
        help="fail every async test during which the event loop was blocked longer than SECONDS "
        "(ini: blocking_threshold)",
    )
    group.addoption(
        "--blocking-strict",
        nargs="?",
        const="report",
        default=None,
        metavar="report|raise",
        help="also fail async tests that make a known blocking call on the event loop thread "
        "(report: after the test; raise: at the call) (ini: blocking_strict)",
    )
    group.addoption(
        "--blocking-fail-on-starvation",
        action="store_true",
        default=None,
        help="also fail tests whose event loop was starved (its thread waited for a CPU: an overloaded "
        "machine, Linux only), not only blocked (ini: blocking_fail_on_starvation)",
    )
    parser.addini(
        "blocking_fail_on_starvation",
        "fail async tests whose event loop was starved for CPU, not only blocked (default false)",
        type="bool",
        default=False,
    )
    parser.addini(
        "blocking_threshold",
        "fail every async test during which the event loop was blocked longer than this many seconds",
        default="",
    )
    parser.addini("blocking_strict", "false, report or raise: asyncbridge's strict mode for watched tests", default="")
    parser.addini(
        "blocking_allow",
        "strict-mode allow rules, one [CALL@]MODULE[:FUNCTION] per line",
        type="linelist",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(threshold=None, *, strict=None, allow=(), strict_rules=None, enabled=True): "
        "run this async test under asyncbridge's BlockingDetector and fail it if the event loop blocked "
        f"longer than threshold seconds (default: --blocking-threshold, else {DEFAULT_THRESHOLD}); "
        "enabled=False opts out.",
    )
    option = config.getoption("--blocking-threshold")
    ini = config.getini("blocking_threshold")
    strict_option = config.getoption("--blocking-strict")
    try:
        threshold = _threshold(option) if option is not None else _threshold(ini) if ini.strip() else None
        strict = _strict_option(strict_option if strict_option is not None else config.getini("blocking_strict"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    allow: list[str] = list(config.getini("blocking_allow"))
    starvation = config.getoption("--blocking-fail-on-starvation")
    fail_on_starvation = bool(config.getini("blocking_fail_on_starvation") if starvation is None else starvation)
    config.stash[_SETTINGS] = _Settings(threshold, strict, allow, fail_on_starvation)


def _marker_options(
    threshold: float | None = None,
    *,
    strict: bool | StrictOption | None = None,
    allow: tuple[str, ...] | list[str] = (),
    strict_rules: int | None = None,
    enabled: bool = True,
) -> tuple[float | None, bool | StrictOption | None, list[str], int | None, bool]:
    return threshold, strict, list(allow), strict_rules, enabled


def _item_detector(item: pytest.Item, *, requested: bool = False) -> BlockingDetector | None:
    """The detector for this test, made once; None if the plugin is off for it."""
    detector = item.stash.get(_DETECTOR, None)
    if detector is not None:
        return detector
    settings = item.config.stash[_SETTINGS]
    marker = item.get_closest_marker(MARKER)
    threshold: float | None = None
    strict: bool | StrictOption | None = None
    allow: list[str] = []
    strict_rules: int | None = None
    enabled = (
        settings.threshold is not None
        or settings.strict is not False
        or requested
        or "blocking_detector" in getattr(item, "fixturenames", ())
    )
    if marker is not None:
        try:
            threshold, strict, allow, strict_rules, marker_enabled = _marker_options(*marker.args, **marker.kwargs)
        except TypeError as exc:
            pytest.fail(f"bad @pytest.mark.{MARKER}(...): {exc}", pytrace=False)
        enabled = marker_enabled  # the marker turns the plugin on, or with enabled=False off
    if not enabled:
        return None
    chosen: bool | StrictOption = settings.strict if strict is None else strict
    if chosen is not False:
        allow = [*settings.allow, *allow]
        settings.strict_used = True
    try:
        detector = BlockingDetector(
            threshold if threshold is not None else settings.threshold or DEFAULT_THRESHOLD,
            strict=chosen,
            allow=allow,
            strict_rules=strict_rules,
        )
    except (TypeError, ValueError) as exc:
        pytest.fail(f"asyncbridge blocking detector: {exc}", pytrace=False)
    item.stash[_DETECTOR] = detector
    return detector


def _watched(test: Callable[..., Coroutine[Any, Any, Any]], detector: BlockingDetector) -> Callable[..., Any]:
    @functools.wraps(test)
    async def run_watched(*args: Any, **kwargs: Any) -> Any:
        async with detector:
            return await test(*args, **kwargs)

    return run_watched


def _failure(events: list[BlockingEvent], threshold: float) -> str:
    blocks = [event for event in events if event.call is None]
    calls = [event for event in events if event.call is not None]
    parts: list[str] = []
    if blocks:
        parts.append(f"the event loop was blocked longer than {threshold} s during this test:")
        parts += [event.format() for event in blocks]
    if calls:
        parts.append("known blocking calls were made on the event loop thread during this test:")
        parts += [event.format() for event in calls]
    return "\n\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    detector = _item_detector(item)
    if detector is None or not isinstance(item, pytest.Function):
        return (yield)
    original = item.obj
    inner = getattr(getattr(original, "hypothesis", None), "inner_test", None)
    if inspect.iscoroutinefunction(original):
        item.obj = _watched(original, detector)
        restore: Callable[[], None] = lambda: setattr(item, "obj", original)  # noqa: E731
    elif inner is not None and inspect.iscoroutinefunction(inner):
        # A hypothesis test: watch each example's coroutine.
        original.hypothesis.inner_test = _watched(inner, detector)
        restore = lambda: setattr(original.hypothesis, "inner_test", inner)  # noqa: E731
    else:
        return (yield)  # a sync test: there is no event loop to watch
    try:
        result = yield
    except BaseException:
        if detector.events:
            item.add_report_section("call", "blocking", _failure(detector.events, detector.threshold))
        raise
    finally:
        restore()
        _note_allow_rules(item, detector)
    settings = item.config.stash[_SETTINGS]
    failing = [event for event in detector.events if settings.fail_on_starvation or not event.starved]
    if failing:
        pytest.fail(_failure(failing, detector.threshold), pytrace=False)
    if detector.events:  # starved only: the machine was overloaded, the test's code is not to blame
        settings.starved.append(item.nodeid)
        item.add_report_section("call", "blocking", _failure(detector.events, detector.threshold))
    return result


def _note_allow_rules(item: pytest.Item, detector: BlockingDetector) -> None:
    settings = item.config.stash[_SETTINGS]
    unused = set(detector.unused_allow_rules())
    settings.matched |= {rule for rule in settings.allow if rule not in unused}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    settings = config.stash.get(_SETTINGS, None)
    if settings is None:
        return
    if settings.starved:
        terminalreporter.write_line(
            f"asyncbridge: the event loop was starved for CPU, not blocked, in {len(settings.starved)} test(s) "
            "that passed (an overloaded machine; --blocking-fail-on-starvation fails them): "
            + ", ".join(settings.starved),
            yellow=True,
        )
    if not settings.strict_used:
        return
    unused = [rule for rule in settings.allow if rule not in settings.matched]
    if unused:
        terminalreporter.write_line(
            "asyncbridge: blocking_allow rules that never matched a call: " + ", ".join(unused), yellow=True
        )


@pytest.fixture
def blocking_detector(request: pytest.FixtureRequest) -> BlockingDetector:
    """The BlockingDetector watching this async test; requesting it turns the plugin on for the test.

    The test fails at the end if ``blocking_detector.events`` is not empty:
    clear it (``blocking_detector.events.clear()``) after checking events you
    expected. Configure it with the ``blocking_detector`` marker.

    Example:
        ```python
        import time
        import pytest


        @pytest.mark.anyio
        @pytest.mark.blocking_detector(threshold=0.05)
        async def test_the_block_is_seen(blocking_detector):
            time.sleep(0.15)  # the block the test expects
            await blocking_detector.checkpoint()
            assert len(blocking_detector.events) == 1
            blocking_detector.events.clear()  # expected: the test passes
        ```
    """
    detector = _item_detector(request.node, requested=True)
    if detector is None:  # turned off by the marker: still hand out an idle detector
        detector = BlockingDetector()
    return detector
