"""Ctrl-C and SIGTERM end `bench` with one line at any moment, and the rerun resumes.

The handler raises at once (KeyboardInterrupt, or `Terminated` for SIGTERM) and notes the
signal, so that code which swallows the exception (a library importing, a finaliser) cannot
make the process carry on: `check()` raises it again at the next safe point (every run and
every epoch), and the CLI treats any error that follows a signal as that signal."""

from __future__ import annotations

import signal
import sys
from types import FrameType

_received: int | None = None
_raising = True
_installed = False


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler or `kill` stopping the process)."""


def install(raising: bool = True) -> None:
    """Handle SIGINT and SIGTERM in this process (the `bench` program only, not a library user's).
    While the program imports (`raising=False`) a signal is only noted, since nothing could catch
    it yet; installed again with `raising=True` inside the CLI's error handling, a signal noted
    meanwhile is raised there at once."""
    global _raising, _installed, _default_unraisable
    _raising, _installed = raising, True
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    if sys.unraisablehook is not _unraisable:
        _default_unraisable = sys.unraisablehook
        sys.unraisablehook = _unraisable
    if raising:
        check()


_default_unraisable = sys.unraisablehook


def _unraisable(unraisable) -> None:
    """Where the signal's exception was raised inside code that cannot raise (a weakref callback of
    the import machinery, a finaliser), Python would print "Exception ignored in ... Traceback";
    the signal is noted and `check()` raises it at the next safe point, so it is not printed."""
    if _received is not None and isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
        return
    _default_unraisable(unraisable)


def restore() -> None:
    """Install the handlers again where a library replaced them (Ray), if `bench` owns the signals."""
    if _installed:
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    first = _received is None
    _received = signum if first else _received
    if _raising and first:  # a second Ctrl-C while the first unwinds is only noted: no traceback
        raise exception_for(signum)


def exception_for(signum: int) -> BaseException:
    """The exception a signal is raised as."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def received() -> int | None:
    """The signal that arrived, if one did."""
    return _received


def check() -> None:
    """Raise again a signal that arrived and was swallowed."""
    if _received is not None:
        raise exception_for(_received)
