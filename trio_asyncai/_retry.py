"""When to try again: the one backoff policy of every transport.

REST requests, HTTP synthesis and the WebSocket's connection attempts all
wait by this rule between attempts:

- The first wait is the caller's ``*_backoff`` option; each failure in a row
  doubles it, up to :data:`MAX_BACKOFF` (30 s).
- Each wait is drawn from ``[d, 1.5 d)``, so that many clients that failed
  together do not come back together.
- A wait the service asked for (``extra.retry_after_ms``, or a
  ``Retry-After`` header: :attr:`~trio_asyncai.APIError.retry_after`)
  replaces the computed one, exactly.
- A wait that would end past the caller's deadline is not waited: the
  caller raises the error it has at once.

Whether an error is worth another attempt at all is :mod:`trio_asyncai._errors`'
business (:attr:`~trio_asyncai.AsyncAIError.retryable`); how many attempts a
caller makes is its own option (``max_retries``, ``max_reconnect_attempts``).

Failures are counted by kind, and a success resets only its own kind: the
WebSocket counts failed connection attempts (reset by a good connect) apart
from connections lost under utterances (reset by an utterance that
completes), so that a service that accepts connections and then drops them
is not hammered either.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from typing import Final, final

import trio

from ._errors import AsyncAIError, retry_after

__all__ = ["MAX_BACKOFF", "Backoff"]

logger = logging.getLogger("trio_asyncai")

#: The longest computed wait between attempts, before jitter.
MAX_BACKOFF: Final = 30.0
#: Waits are drawn from ``[d, JITTER * d)``.
JITTER: Final = 1.5


@final
class Backoff:
    """Counts failures in a row, and says how long to wait before the next attempt.

    One per client (a synthesizer, a REST client): failures of concurrent
    requests add up, which is what slows a client down against a service in
    trouble.
    """

    def __init__(self, first: float, *, rng: random.Random | None = None) -> None:
        #: The first wait, in seconds: the caller's ``*_backoff`` option.
        self.first = first
        self._failures: Counter[str] = Counter()
        self._random = rng if rng is not None else random.Random()

    def __repr__(self) -> str:
        return f"<Backoff first={self.first} failures={dict(self._failures)}>"

    @property
    def failures(self) -> int:
        """Failures in a row, of every kind."""
        return self._failures.total()

    def failed(self, kind: str = "request") -> None:
        """One more failure of ``kind``: the next wait doubles."""
        self._failures[kind] += 1

    def succeeded(self, kind: str = "request") -> None:
        """``kind`` works again: its failures no longer count."""
        self._failures.pop(kind, None)

    def delay(self, error: AsyncAIError | None = None) -> float:
        """Seconds to wait before the next attempt: the service's word if ``error`` has one, else the rule."""
        asked = retry_after(error) if error is not None else None
        if asked is not None:
            return asked
        failures = self.failures
        if failures == 0:
            return 0.0
        step = min(self.first * 2.0 ** (failures - 1), MAX_BACKOFF)
        return step * self._random.uniform(1.0, JITTER)

    async def wait(self, error: AsyncAIError | None = None, *, deadline: float = math.inf) -> bool:
        """Sleep :meth:`delay`, unless it would end past ``deadline``: then return ``False`` at once.

        Returns ``True`` after a wait (or none, when none is due). Either way
        it is a checkpoint.
        """
        delay = self.delay(error)
        if trio.current_time() + delay >= deadline:
            await trio.lowlevel.checkpoint()
            return False
        if delay:
            logger.debug("trying again in %.2f s", delay)
        await trio.sleep(delay)
        return True
