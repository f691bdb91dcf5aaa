"""The WebSocket synthesizer on the wire: what it sends, and how it ends an utterance.

Checked against what the local server logs of each client message, with the
server in its default, reference-shaped mode (ASYNC_API.md, "End of a
context") and with the fault switches that bring back behaviours the service
does not have.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio
import trio.testing
from helpers import TIMEOUT, synth_for

from trio_asyncai import (
    ConfigurationError,
    ConnectionLostError,
    ContextEndedError,
    ProtocolError,
    RateLimitError,
    ServerError,
    SynthesisTimeout,
)
from trio_asyncai.server import LocalServer, open_local_server


def sent_for(server: LocalServer, context_id: str) -> list[dict[str, Any]]:
    """Every message the client sent for one context, in order."""
    return [m for c in server.log.connections for m in c.messages if m.get("context_id") == context_id]


async def test_finish_sends_the_last_text_then_close_context_and_ends_on_the_final(
    server: LocalServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.speak("Hello from trio.") as utterance:
                audio = await utterance.read_all()
            assert utterance.state == "complete"
            await server.log.wait_for(lambda log: not log.unclosed_contexts())
    assert audio
    assert str(uuid.UUID(utterance.context_id)) == utterance.context_id  # a dashed UUID
    assert sent_for(server, utterance.context_id) == [
        {"transcript": "Hello from trio. ", "context_id": utterance.context_id, "force": True},
        {"close_context": True, "transcript": "", "context_id": utterance.context_id},
    ]
    record = server.log.connections[0]
    assert record.finals_sent == 1
    assert synth.statistics().messages_ignored == 0


async def test_streamed_tokens_go_out_as_chunks_ending_in_one_space(server: LocalServer) -> None:
    tokens = ["Hel", "lo", " wor", "ld,", " how", " are", " you", "?\n\n", "Fine", "."]
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.open_utterance() as utterance:
                for token in tokens:
                    await utterance.send(token)
                await utterance.finish()
                audio = await utterance.read_all()
    assert audio
    messages = sent_for(server, utterance.context_id)
    texts = [m["transcript"] for m in messages if "close_context" not in m]
    assert all(t.endswith(" ") and not t.endswith("  ") for t in texts)
    assert "".join(texts).split() == "".join(tokens).split()
    # No word is cut in two.
    assert all(word in "".join(tokens).split() for t in texts for word in t.split())
    assert messages[-1] == {"close_context": True, "transcript": "", "context_id": utterance.context_id}


async def test_markup_is_never_cut(server: LocalServer) -> None:
    tokens = ["Call", " <dig", "its>0800", " 123", "</digits>", " now", ' <break time="300ms"/>', "ok."]
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.open_utterance() as utterance:
                for token in tokens:
                    await utterance.send(token)
                await utterance.finish()
                await utterance.read_all()
    texts = [m["transcript"] for m in sent_for(server, utterance.context_id) if "close_context" not in m]
    joined = "".join(texts)
    assert "<digits>0800 123</digits>" in joined
    assert '<break time="300ms"/>' in joined
    assert any("<digits>0800 123</digits>" in t for t in texts)


async def test_an_unspoken_utterance_sends_nothing(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.open_utterance() as utterance:
                await utterance.finish()
                assert await utterance.read_all() == b""
            assert utterance.state == "complete"
    assert sent_for(server, utterance.context_id) == []


async def test_an_interrupted_utterance_is_closed_and_its_late_audio_dropped(server: LocalServer) -> None:
    text = " ".join(["word"] * 200) + "."
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            received = 0
            async with synth.speak(text) as utterance:
                async for chunk in utterance:
                    received += len(chunk.audio)
                    utterance.interrupt()
            # The service still sends the rest of the context and its final: none of it arrives.
            await server.log.wait_for(
                lambda log: log.connections[0].finals_sent == 1 and not log.unclosed_contexts()
            )
            async with synth.speak("Next.") as after:
                assert await after.read_all()
            ignored = synth.statistics().messages_ignored
    assert utterance.interrupted
    assert received == utterance.metrics.audio_bytes > 0
    assert ignored >= 1  # at least the final
    closes = [m for m in sent_for(server, utterance.context_id) if m.get("close_context")]
    assert len(closes) == 1


async def test_a_final_before_the_close_fails_the_utterance_after_its_audio(server: LocalServer) -> None:
    server.faults.final_per_force = True
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            chunks = 0
            with pytest.raises(ContextEndedError, match="before its text was finished") as info:
                async with synth.open_utterance() as utterance:
                    await utterance.send("A first sentence, flushed.")
                    await utterance.flush()
                    async for _ in utterance:
                        chunks += 1
            await server.log.wait_for(lambda log: not log.unclosed_contexts())
    failed = info.value.utterance
    assert chunks > 0  # what arrived was delivered before the error
    assert failed is not None
    assert failed.state == "failed"
    assert [m for m in sent_for(server, failed.context_id) if m.get("close_context")]


async def test_a_close_without_final_times_out_after_the_audio(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.no_final_on_close = True
    with trio.fail_after(600):
        async with synth_for(server, audio_timeout=5.0) as synth:
            start = trio.current_time()
            with pytest.raises(SynthesisTimeout):
                async with synth.speak("Never ends.") as utterance:
                    await utterance.read_all()
            elapsed = trio.current_time() - start
    assert 5.0 <= elapsed < 6.0


async def test_the_services_idle_close_fails_nothing_and_the_next_utterance_reconnects(
    jump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with open_local_server(engine="signal", idle_timeout=60) as server:
            async with synth_for(server, keepalive_interval=None) as synth:
                async with synth.speak("One.") as utterance:
                    first = await utterance.read_all()
                await trio.sleep(61)  # the service sends TIMEOUT and closes
                await server.log.wait_for(lambda log: log.connections_closed == 1)
                async with synth.speak("Two.") as utterance:
                    second = await utterance.read_all()
                opened = synth.statistics().connections_opened
    assert first
    assert second
    assert opened == 2
    assert server.log.connections[0].close_reason == "TIMEOUT"


@pytest.mark.parametrize("code", ["INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"])
async def test_server_errors_over_the_websocket_are_retryable(server: LocalServer, code: str) -> None:
    server.faults.error_on_text = code
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            with pytest.raises(ServerError) as info:
                async with synth.speak("Boom.") as utterance:
                    await utterance.read_all()
            # The connection is fine: the next utterance works on it.
            async with synth.speak("Fine.") as utterance:
                assert await utterance.read_all()
    assert info.value.code == code
    assert info.value.retryable
    # The service's id for the failed request is kept, for support tickets.
    assert isinstance(info.value.extra["request_id"], str)
    assert server.log.connections_opened == 1


async def test_a_rate_limit_over_the_websocket_says_how_long_to_wait(server: LocalServer) -> None:
    server.faults.error_on_text = "RATE_LIMIT_EXCEEDED"
    server.faults.retry_after_ms = 2500
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            with pytest.raises(RateLimitError) as info:
                async with synth.speak("Too fast.") as utterance:
                    await utterance.read_all()
    assert info.value.retry_after == 2.5
    assert info.value.retryable


async def test_unreadable_audio_fails_its_utterance_after_what_came_before(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.speak("Warm up.") as utterance:
                assert await utterance.read_all()
            server.faults.corrupt_next_audio = True
            with pytest.raises(ProtocolError, match="base64") as info:
                async with synth.speak("This one has a hole in it.") as broken:
                    await broken.read_all()
            # Only that utterance: the connection and the next one are fine.
            async with synth.speak("After.") as after:
                assert await after.read_all()
            await server.log.wait_for(lambda log: not log.unclosed_contexts())
            stats = synth.statistics()
    assert broken.state == "failed"
    assert info.value.context_id == broken.context_id
    assert info.value.utterance is broken
    assert stats.protocol_errors == 1
    assert stats.connections_opened == 1


async def test_a_message_over_the_size_limit_loses_the_connection(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, max_message_size=1000) as synth:
            with pytest.raises(ConnectionLostError):
                async with synth.speak("A sentence long enough to need big messages.") as utterance:
                    await utterance.read_all()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "big"])
async def test_bad_max_message_size_is_refused(server: LocalServer, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_message_size"):
        async with synth_for(server, max_message_size=bad):
            pass  # pragma: no cover


async def test_a_refused_handshake_waits_as_long_as_the_service_asks(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.handshake_statuses = [429] * 3  # the first attempt and two more
    server.faults.retry_after_ms = 7000
    with trio.fail_after(600):
        start = trio.current_time()
        with pytest.raises(RateLimitError) as info:
            async with synth_for(server, max_reconnect_attempts=2, reconnect_backoff=0.5, connect_timeout=30):
                pass  # pragma: no cover
        elapsed = trio.current_time() - start
    assert info.value.retry_after == 7.0
    # Two waits of 7 s as asked, not the 0.5 s and 1 s of the backoff.
    assert 14.0 <= elapsed < 15.0
