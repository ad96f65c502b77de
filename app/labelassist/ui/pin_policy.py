"""The admin PIN's back-off: after a few wrong PINs in a row every further try waits longer.

Pure Python, no Kivy: the Admin screen asks it before checking a PIN and tells it the outcome.
After :attr:`PinBackoff.FREE_TRIES` wrong PINs in a row every further try waits twice as long
(capped at :attr:`PinBackoff.MAX_WAIT_S`): guessing a 4-digit PIN by hand becomes hopeless, a
user who mistyped waits seconds.
"""

from __future__ import annotations


class PinBackoff:
    """The count of wrong PINs in a row and until when the next try must wait.

    Times are seconds of a monotonic clock, passed in by the caller (``now``), so that the
    policy never reads a clock itself.
    """

    FREE_TRIES = 3
    MAX_WAIT_S = 300.0

    def __init__(self) -> None:
        self.wrong = 0
        self.blocked_until = 0.0

    def wait_left(self, now: float) -> float:
        """Seconds still to wait before a PIN may be tried at ``now`` (0 when it may)."""
        return max(0.0, self.blocked_until - now)

    def right_pin(self) -> None:
        """The PIN was right: the count starts again."""
        self.wrong = 0

    def wrong_pin(self, now: float) -> float:
        """The PIN tried at ``now`` was wrong; returns how long the next try waits (0: at once)."""
        self.wrong += 1
        if self.wrong < self.FREE_TRIES:
            return 0.0
        wait = min(self.MAX_WAIT_S, 2.0 ** (self.wrong - self.FREE_TRIES + 1))
        self.blocked_until = now + wait
        return wait


__all__ = ["PinBackoff"]
