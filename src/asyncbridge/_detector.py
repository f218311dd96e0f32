"""BlockingDetector: the public detector, its arguments checked, one session per ``async with``.

The heartbeat, the watchdog thread and how they measure a block are the
session's, in ``_detector_session.py``; strict mode's rules and patching are
in ``_strict_rules.py`` and ``_strict.py``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal, NoReturn

from typing_extensions import Self, deprecated

from ._backends import running_asyncio_loop, running_backend
from ._checks import check_seconds
from ._detector_event import BlockingEvent
from ._detector_loops import checkpoint_asyncio, checkpoint_trio, start_asyncio, start_trio, stop_asyncio, stop_trio
from ._detector_session import DetectorSession, DetectorSettings, entry_frame
from ._strict import STRICT_ACTIONS
from ._strict_rules import check_version, parse_allow

__all__ = ["DEFAULT_THRESHOLD", "BlockingDetector"]

logger = logging.getLogger("asyncbridge.blocking")

DEFAULT_THRESHOLD = 0.1  # asyncio's slow_callback_duration; the common default
BEATS_PER_THRESHOLD = 4  # interval = threshold / 4: precise to an eighth of the threshold; not tuned
MIN_INTERVAL = 0.001  # never beat more than 1000 times a second, whatever the threshold


class BlockingDetector:
    """Report every time the event loop is blocked for longer than ``threshold`` seconds.

    Use it around the code to watch, inside a running asyncio, uvloop or trio
    program. While active, a heartbeat on the loop and a watchdog thread find each time
    the loop thread does not get back to the loop for longer than
    ``threshold``, whatever the cause (``time.sleep``, a sync driver, a CPU
    loop, an unknown library), and record one :class:`BlockingEvent` per
    block, with the loop thread's stack sampled while it was blocked. Every
    block of at least twice the threshold is reported; shorter ones from
    ``threshold`` on may be.

    Each event is appended to :attr:`events`, logged at WARNING on the
    ``asyncbridge.blocking`` logger, and passed to ``on_block``. All three
    happen in the detector's watchdog thread, never on the loop, so reporting
    adds nothing to the block; when ``async with`` exits, every event has been
    recorded and passed on. An exception raised by ``on_block`` is logged and
    the detector carries on.

    Strict mode (off by default) also catches *known* blocking calls the
    moment the loop thread makes them, however short: ``time.sleep``, blocking
    socket and file I/O, ``subprocess`` waits, contended ``threading.Lock``
    acquires and the rest of the versioned rule set listed in the docs. The
    same calls in worker threads are never reported, nor calls that cannot
    block (a non-blocking socket or descriptor, ``acquire(blocking=False)``,
    a free lock).

    Detectors nest, repeat, and run on several loops in several threads at
    once without interfering: each watches the loop it was entered on.

    Args:
        threshold: seconds the loop may go without getting back to the loop
            before it counts as blocked (default 0.1, asyncio's
            ``slow_callback_duration``).
        on_block: called with each :class:`BlockingEvent`, in the watchdog thread.
        strict: ``False`` (default); ``True`` or ``"report"`` to record each known
            blocking call made on the loop thread as an event (``call`` set, its
            duration measured) once it returns; ``"raise"`` to raise
            :class:`BlockingCallError` instead of making the call.
        allow: strict-mode allow rules, ``"[CALL@]MODULE[:FUNCTION]"``: a call is
            allowed when a frame of its stack belongs to ``MODULE`` (or a
            submodule), in ``FUNCTION`` if given; ``CALL`` (a rule name or an
            ``fnmatch`` pattern, e.g. ``"time.sleep"`` or ``"socket.*"``) limits
            it to those calls. :meth:`unused_allow_rules` tells which never matched.
        strict_rules: the version of the strict rule set to use; default the
            latest. Pin it so that a new asyncbridge release adding rules
            cannot fail your build.

    Raises:
        TypeError: ``threshold`` is not a number, ``on_block`` is not callable,
            or an allow rule is not a string.
        ValueError: ``threshold`` is not positive and finite, ``strict`` is not one
            of the values above, an allow rule is malformed or given without
            strict mode, or ``strict_rules`` is not a known version.

    Example:
        ```python
        import time
        from asyncbridge import BlockingDetector

        async with BlockingDetector(threshold=0.05) as detector:
            time.sleep(0.15)  # blocks the event loop
        assert detector.events  # every block is recorded once the block exits
        for event in detector.events:
            print(event)  # duration, task, and the line that blocked
        ```
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        on_block: Callable[[BlockingEvent], object] | None = None,
        strict: bool | Literal["report", "raise"] = False,
        allow: Iterable[str] = (),
        strict_rules: int | None = None,
    ) -> None:
        seconds = check_seconds(threshold, "threshold")
        if on_block is not None and not callable(on_block):
            raise TypeError(f"on_block must be a callable taking a BlockingEvent, got {on_block!r}")
        if strict is True:
            strict = "report"
        if strict is not False and strict not in STRICT_ACTIONS:
            raise ValueError(f"strict must be False, True, 'report' or 'raise', got {strict!r}")
        if isinstance(allow, str):
            allow = [allow]  # one rule given bare: surely not a list of its letters
        parsed = tuple(parse_allow(rule) for rule in allow)
        if parsed and strict is False:
            raise ValueError("allow rules only apply to strict mode; pass strict=True (or 'raise') with them")
        self._settings = DetectorSettings(
            threshold=seconds,
            interval=max(seconds / BEATS_PER_THRESHOLD, MIN_INTERVAL),
            strict=strict,
            strict_rules=check_version(strict_rules),
            allow=parsed,
        )
        self._on_block = on_block
        self._matched: set[str] = set()
        self._session: DetectorSession | None = None
        self.events: list[BlockingEvent] = []
        """Every event recorded so far, oldest first (across every ``async with``)."""

    def __repr__(self) -> str:
        state = "active" if self._session is not None else "inactive"
        settings = self._settings
        strict = "" if settings.strict is False else f" strict={settings.strict!r}"
        return f"<BlockingDetector threshold={settings.threshold}{strict} {state}, {len(self.events)} events>"

    @property
    def threshold(self) -> float:
        """Seconds the loop may be away before it counts as blocked."""
        return self._settings.threshold

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats: durations are right to about half of this."""
        return self._settings.interval

    def unused_allow_rules(self) -> list[str]:
        """Return the allow rules that have not matched any call yet, in the order given.

        An allow rule that never matches is dead weight at best, and at worst a
        typo that lets nothing through: check this at the end of a test run.

        Example:
            ```python
            from asyncbridge import BlockingDetector

            async with BlockingDetector(strict=True, allow=["time.sleep@myapp.legacy"]) as detector:
                pass  # the code under test, which never called time.sleep from myapp.legacy
            assert detector.unused_allow_rules() == ["time.sleep@myapp.legacy"]
            ```
        """
        matched = set(self._matched)
        session = self._session
        if session is not None and session.strict is not None:
            matched |= session.strict.matched
        return [rule.text for rule in self._settings.allow if rule.text not in matched]

    # -- async with -----------------------------------------------------------------

    @deprecated("BlockingDetector is an async context manager: use 'async with BlockingDetector(...)'", category=None)
    def __enter__(self) -> NoReturn:
        raise TypeError(
            "BlockingDetector watches an event loop, so it is entered with 'async with BlockingDetector(...):' "
            "inside a coroutine, not with 'with'; to watch a whole program, run it under "
            "'python -m asyncbridge watch'"
        )

    def __exit__(self, *exc_info: object) -> None:
        """Never reached: ``__enter__`` raises (defined so that ``with`` reaches it)."""

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("this BlockingDetector is already active; to nest detectors, create another one")
        loop = running_asyncio_loop()
        if loop is not None:
            entry = entry_frame(sys._getframe())  # pyright: ignore[reportPrivateUsage]
            self._session = start_asyncio(self._settings, self._record, loop, entry)
        elif running_backend() == "trio":
            entry = entry_frame(sys._getframe())  # pyright: ignore[reportPrivateUsage]
            self._session = start_trio(self._settings, self._record, entry)
        else:
            raise RuntimeError("BlockingDetector must be entered in a running asyncio (or uvloop) or trio program")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._session
        if session is None:
            return
        self._session = None
        if session.loop is not None:
            await stop_asyncio(session, session.loop)
        else:
            await stop_trio(session)
        self._finish(session)

    async def checkpoint(self) -> None:
        """Wait until every block that ended before this call is in :attr:`events` (and logged, and passed on).

        A block is recorded by the watchdog thread shortly after it ends,
        at the heartbeat's next turn: a test that blocks on purpose and looks
        at :attr:`events` on the very next line may not see it yet. Await this
        first. Returns at once when the detector is not active. Never blocks the loop.

        Example:
            ```python
            import time
            from asyncbridge import BlockingDetector

            async with BlockingDetector(threshold=0.05) as detector:
                time.sleep(0.15)  # the block the test expects
                await detector.checkpoint()
                assert detector.events  # recorded already
            ```
        """
        session = self._session
        if session is None:
            return
        if session.loop is not None:
            await checkpoint_asyncio(session, session.loop)
        else:
            await checkpoint_trio(session)

    # -- attaching without async with (python -m asyncbridge watch) --------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching ``loop``, which this thread is about to run; for code that runs loops itself.

        The sync counterpart of ``async with``, for a loop runner that
        cannot enter the detector inside the loop (``python -m asyncbridge
        watch`` wraps ``run_forever`` with it). Call :meth:`detach` once the
        loop has stopped.

        Raises:
            RuntimeError: the detector is already active.

        Example:
            ```python
            import asyncio
            from asyncbridge import BlockingDetector

            loop = asyncio.new_event_loop()
            detector = BlockingDetector(threshold=0.05)
            detector.attach(loop)  # before the loop runs
            try:
                loop.run_until_complete(asyncio.sleep(0.01))
            finally:
                detector.detach()  # once it has stopped
                loop.close()
            ```
        """
        if self._session is not None:
            raise RuntimeError("this BlockingDetector is already active")
        # The hook's frame: it runs the loop, in C for uvloop, so it is what an idle loop thread shows.
        entry = sys._getframe(1)  # pyright: ignore[reportPrivateUsage]
        self._session = start_asyncio(self._settings, self._record, loop, entry)

    def detach(self) -> None:
        """Stop watching the loop given to :meth:`attach`, once it has stopped running; waits for the watchdog."""
        session = self._session
        if session is None:
            return
        self._session = None
        session.stop()
        session.join()
        self._finish(session)

    # -- internals --------------------------------------------------------------------

    def _finish(self, session: DetectorSession) -> None:
        if session.strict is not None:
            self._matched |= session.strict.matched

    def _record(self, event: BlockingEvent) -> None:
        """Record one event: in the watchdog thread."""
        self.events.append(event)
        logger.warning("%s", event)
        on_block = self._on_block
        if on_block is not None:
            try:
                on_block(event)
            except Exception:
                logger.exception("asyncbridge: the BlockingDetector on_block callback %r raised", on_block)
