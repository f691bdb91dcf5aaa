"""The one backoff policy (trio_asyncai._retry), on its own and as REST uses it."""

from __future__ import annotations

import itertools
import random

import pytest
import trio
import trio.testing

from trio_asyncai import RateLimitError, ServerError, open_client
from trio_asyncai._retry import JITTER, MAX_BACKOFF, Backoff
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server


def test_waits_double_from_the_first_are_jittered_and_capped() -> None:
    backoff = Backoff(0.5, rng=random.Random(7))
    assert backoff.delay() == 0.0  # nothing failed: no wait
    steps = []
    for _ in range(12):
        backoff.failed()
        steps.append(backoff.delay())
    for failures, wait in enumerate(steps, start=1):
        step = min(0.5 * 2 ** (failures - 1), MAX_BACKOFF)
        assert step <= wait < JITTER * step
    assert max(steps) < JITTER * MAX_BACKOFF
    assert len(set(steps)) == len(steps)  # drawn, not the bare doubling


def test_the_service_s_word_replaces_the_rule() -> None:
    backoff = Backoff(0.5)
    for _ in range(5):
        backoff.failed()
    asked = RateLimitError("slow down", code="RATE_LIMIT_EXCEEDED", retry_after=2.5)
    assert backoff.delay(asked) == 2.5
    assert backoff.delay(ServerError("busy")) >= 8.0  # no word: the rule


def test_a_success_resets_only_its_own_kind() -> None:
    backoff = Backoff(1.0)
    backoff.failed("connect")
    backoff.failed("connect")
    backoff.failed("drop")
    assert backoff.failures == 3
    backoff.succeeded("connect")
    assert backoff.failures == 1
    assert 1.0 <= backoff.delay() < 1.5
    backoff.succeeded("drop")
    assert backoff.delay() == 0.0


async def test_a_wait_past_the_deadline_is_not_waited(jump_clock: trio.testing.MockClock) -> None:
    backoff = Backoff(4.0)
    backoff.failed()
    start = trio.current_time()
    assert not await backoff.wait(deadline=start + 3.0)
    assert trio.current_time() == start
    assert await backoff.wait(deadline=start + 60.0)
    assert 4.0 <= trio.current_time() - start < 6.0


async def test_rest_retries_wait_by_the_policy_capped_and_jittered(
    jump_clock: trio.testing.MockClock,
) -> None:
    """Ten 503s in a row: the waits double from retry_backoff, but none passes the cap."""
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        server.faults.http_statuses = [503] * 10
        starts: list[float] = []

        async with open_client(base_url=server.url, max_retries=10, retry_backoff=1.0) as client:
            real_send = client._rest.client.send

            async def timed_send(*args: object, **kwargs: object) -> object:
                starts.append(trio.current_time())
                return await real_send(*args, **kwargs)  # type: ignore[arg-type]

            client._rest.client.send = timed_send  # type: ignore[method-assign,assignment]
            with trio.fail_after(3600):
                voice = await client.voices.get(DEFAULT_VOICE_ID)
    assert voice.voice_id == DEFAULT_VOICE_ID
    waits = [b - a for a, b in itertools.pairwise(starts)]
    assert len(waits) == 10
    assert max(waits) < JITTER * MAX_BACKOFF + 1  # no 256 s or 512 s wait
    assert waits[0] >= 1.0
    assert waits[-1] >= MAX_BACKOFF
    assert [r.status for r in server.log.http] == [503] * 10 + [200]


async def test_rest_failures_count_across_requests_until_one_succeeds(
    jump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_server(engine="signal", idle_timeout=None) as server:
        async with open_client(base_url=server.url, max_retries=0, retry_backoff=1.0) as client:
            server.faults.http_statuses = [503, 503]
            for _ in range(2):
                with pytest.raises(ServerError):
                    await client.voices.get(DEFAULT_VOICE_ID)
            assert client._rest._backoff.failures == 2
            await client.voices.get(DEFAULT_VOICE_ID)
            assert client._rest._backoff.failures == 0
