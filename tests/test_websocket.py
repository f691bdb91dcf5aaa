"""The WebSocket Synthesizer, end to end, against the local server on 127.0.0.1."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
import trio
import trio.testing
from helpers import TIMEOUT, reader_caught_up, synth_for, tasks_named, tcp_peer

import trio_asyncai
from trio_asyncai import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    NotFoundError,
    OutputFormat,
    RateLimitError,
    ServerError,
    SlowConsumerError,
    SynthesisTimeout,
    Synthesizer,
    open_synthesizer,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer, open_local_server

LONG_TEXT = "Alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima."


async def speak_all(synth: Synthesizer, text: str) -> bytes:
    async with synth.speak(text) as utterance:
        return await utterance.read_all()


async def wait_all_contexts_closed(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        await server.log.wait_for(lambda log: not log.unclosed_contexts())


# ------------------------------------------------------------------ basics


async def test_speak_returns_audio_in_the_requested_format(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, sample_rate=22050) as synth:
            chunks = []
            async with synth.speak("Hello from trio.") as utterance:
                async for chunk in utterance:
                    chunks.append(chunk)
    assert chunks, "no audio arrived"
    assert all(c.sample_rate == 22050 and c.encoding == "pcm_s16le" for c in chunks)
    assert all(c.num_channels == 1 and c.context_id == utterance.context_id for c in chunks)
    total = sum(len(c.audio) for c in chunks)
    assert total % 2 == 0
    assert utterance.state == "complete"
    assert utterance.metrics.audio_bytes == total


async def test_float_encoding_doubles_the_bytes(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            s16 = await speak_all(synth, "Same words.")
        f32_format = OutputFormat(encoding="pcm_f32le", sample_rate=16000)
        async with synth_for(server, sample_rate=None, output_format=f32_format) as synth:
            f32 = await speak_all(synth, "Same words.")
    assert len(f32) == 2 * len(s16) > 0


async def test_utterance_ends_on_the_final_not_on_a_timeout(server: LocalServer) -> None:
    # No audio timeout at all: if the end of the utterance depended on one,
    # iteration would never end and fail_after would fire.
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, audio_timeout=None, keepalive_interval=None) as synth:
            audio = await speak_all(synth, "Done when done.")
    assert audio


async def test_every_context_is_closed_after_completion(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            for text in ("One.", "Two.", "Three."):
                await speak_all(synth, text)
            await wait_all_contexts_closed(server)
    assert server.log.contexts_opened == 3
    assert server.log.contexts_closed == 3


async def test_streamed_text_equals_whole_text(server: LocalServer) -> None:
    text = "Streaming works token by token. And across sentences."
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            whole = await speak_all(synth, text)
            async with synth.open_utterance() as utterance:
                for token in text.split(" "):
                    await utterance.send(token + " ")
                await utterance.finish()
                streamed = await utterance.read_all()
    # The server may cut and resample the text differently when it comes in
    # pieces, so compare the amount of speech, not the samples.
    assert streamed and abs(len(streamed) - len(whole)) <= 0.02 * len(whole)
    (conn,) = server.log.connections
    mine = [m for m in conn.messages if m.get("context_id") == utterance.context_id]
    sent = "".join(m.get("transcript", "") for m in mine)
    assert sent.strip() == text


async def test_flush_then_finish_waits_for_every_final(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            first = await speak_all(synth, "First part")
            second = await speak_all(synth, "second part.")
            async with synth.open_utterance() as utterance:
                await utterance.send("First part")
                await utterance.flush()
                await utterance.finish("second part.")
                both = await utterance.read_all()
    assert both == first + second


async def test_metrics_are_per_utterance(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.speak("Short.") as a:
                await a.read_all()
            async with synth.speak("A somewhat longer sentence.") as b:
                await b.read_all()
    for utterance, text in ((a, "Short."), (b, "A somewhat longer sentence.")):
        m = utterance.metrics
        assert m.characters == len(text)
        assert m.ttfb is not None and m.processing_time is not None
        assert 0 <= m.ttfb <= m.processing_time
        assert m.audio_bytes > 0
    assert b.metrics.audio_bytes > a.metrics.audio_bytes


async def test_concurrent_utterances_each_get_exactly_their_own_audio(server: LocalServer) -> None:
    texts = ["Alpha one two three.", "Bravo four five six seven.", "Charlie eight."]
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            reference = {t: await speak_all(synth, t) for t in texts}
            results: dict[str, bytes] = {}

            async def one(text: str) -> None:
                results[text] = await speak_all(synth, text)

            server.faults.chunk_delay = 0.001  # let the contexts interleave on the wire
            async with trio.open_nursery() as nursery:
                for text in texts:
                    nursery.start_soon(one, text)
    assert results == reference
    assert len(set(reference.values())) == 3


# ------------------------------------------------------------ interruption


async def test_interrupt_stops_audio_at_once_and_nothing_stale_follows(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.chunk_delay = 0.5
    with trio.fail_after(TIMEOUT * 10):
        async with synth_for(server) as synth:
            received = 0
            async with synth.speak(LONG_TEXT) as utterance:
                async for chunk in utterance:
                    received += len(chunk.audio)
                    if received >= 3 * len(chunk.audio):
                        utterance.interrupt()
                        # A checkpoint inside the cancelled block raises Cancelled,
                        # which the block absorbs: nothing after this runs.
                        await trio.lowlevel.checkpoint()
                        pytest.fail("the block went on after interrupt()")
            assert utterance.interrupted
            assert utterance.state == "interrupted"
            assert utterance.metrics.audio_bytes == received
            with pytest.raises(trio.EndOfChannel):
                await utterance.receive()
            # The next utterance gets exactly its own audio.
            server.faults.chunk_delay = 0
            after = await speak_all(synth, "Fresh start.")
            reference = await speak_all(synth, "Fresh start.")
            await wait_all_contexts_closed(server)
    assert after == reference


async def test_interrupt_from_another_task_wakes_a_blocked_reader(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.stall_after_audio_messages = 1
    with trio.fail_after(TIMEOUT * 10):
        async with synth_for(server, audio_timeout=None) as synth:
            got: list[int] = []
            first = trio.Event()
            listened = trio.Event()
            async with trio.open_nursery() as nursery:

                async def listen() -> None:
                    async with synth.speak(LONG_TEXT) as utterance:
                        async for chunk in utterance:
                            got.append(len(chunk.audio))
                            first.set()
                    listened.set()

                nursery.start_soon(listen)
                await first.wait()
                await trio.sleep(5)  # the reader is now blocked waiting for audio
                synth.interrupt()
                await listened.wait()
    assert len(got) == 1


async def test_late_audio_for_a_closed_context_is_dropped(server: LocalServer) -> None:
    server.faults.late_audio_after_close = True
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            reference = await speak_all(synth, "Reference words.")
            async with synth.speak(LONG_TEXT) as utterance:
                async for _ in utterance:
                    utterance.interrupt()
            after = await speak_all(synth, "Reference words.")
            await trio.testing.wait_all_tasks_blocked()
            stats = synth.statistics()
    assert after == reference
    assert stats.messages_ignored >= 1


async def test_leaving_the_block_early_closes_the_context(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.speak(LONG_TEXT) as utterance:
                await utterance.receive()
            assert utterance.state == "closed"
            await speak_all(synth, "Still fine.")
            await wait_all_contexts_closed(server)
    assert server.log.contexts_closed == 2


# --------------------------------------------------------------- keepalive


async def test_keepalive_holds_an_idle_connection_open(jump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):
        async with open_local_server(engine="signal", idle_timeout=15) as server:
            async with synth_for(server, keepalive_interval=10) as synth:
                await trio.sleep(65)
                stats = synth.statistics()
                audio = await speak_all(synth, "Still here.")
                assert synth.statistics().connections_opened == 1
    assert stats.connected
    assert stats.keepalives_sent >= 6
    assert server.log.keepalives >= 6
    assert audio


async def test_without_keepalive_the_server_drops_us_and_we_reconnect(
    jump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with open_local_server(engine="signal", idle_timeout=15) as server:
            async with synth_for(server, keepalive_interval=None) as synth:
                await trio.sleep(65)
                assert not synth.statistics().connected
                audio = await speak_all(synth, "Back again.")
                assert synth.statistics().connections_opened == 2
    assert server.log.keepalives == 0
    assert audio


# ------------------------------------------------------------------ errors


async def test_bad_key_is_an_authentication_error_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk_wrong_secret_123"
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal", api_key="sk_right") as server:
            with pytest.raises(AuthenticationError) as info:
                async with synth_for(server, api_key=secret):
                    pass  # pragma: no cover
    err = info.value
    assert err.code == "INVALID_API_KEY" and err.status == 401
    assert not err.retryable
    for text in (str(err), repr(err), caplog.text):
        assert secret not in text


async def test_right_key_is_accepted_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk_right_secret_456"
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal", api_key=secret) as server:
            async with synth_for(server, api_key=secret) as synth:
                audio = await speak_all(synth, "Authorized.")
                shown = repr(synth) + str(synth.statistics()) + repr(synth.settings)
    assert audio
    assert "trio-websocket" in {r.name for r in caplog.records}  # its debug lines were captured
    assert secret not in caplog.text
    assert secret not in shown


async def test_unknown_voice_is_not_found(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, voice_id="no-such-voice") as synth:
            with pytest.raises(NotFoundError) as info:
                await speak_all(synth, "Anyone there?")
            assert info.value.code == "VOICE_NOT_FOUND"
            # The same settings fail the same way, without hammering the server.
            opened = synth.statistics().connections_opened
            with pytest.raises(NotFoundError):
                await speak_all(synth, "Anyone there?")
            assert synth.statistics().connections_opened == opened
            # A good voice works again.
            synth.update_settings(voice_id=DEFAULT_VOICE_ID)
            assert await speak_all(synth, "Yes.")


async def test_server_error_for_a_context_is_typed_and_the_connection_survives(
    server: LocalServer,
) -> None:
    server.faults.error_on_text = "RATE_LIMIT_EXCEEDED"
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            with pytest.raises(RateLimitError) as info:
                await speak_all(synth, "Too fast.")
            assert info.value.retryable
            assert info.value.utterance is not None
            assert await speak_all(synth, "Slower now.")
            assert synth.statistics().connections_opened == 1


async def test_dropped_connection_keeps_delivered_audio_then_raises(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            server.faults.drop_after_audio_messages = 2
            got = 0
            with pytest.raises(ConnectionLostError):
                async with synth.speak(LONG_TEXT) as utterance:
                    async for _ in utterance:
                        got += 1
            assert got == 2
            server.faults.drop_after_audio_messages = None
            assert await speak_all(synth, "Reconnected.")
            assert synth.statistics().connections_opened == 2


async def test_garbage_from_the_server_is_skipped(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            reference = await speak_all(synth, "Clean words.")
            server.faults.garbage_before_audio = True
            noisy = await speak_all(synth, "Clean words.")
            stats = synth.statistics()
    assert noisy == reference
    assert stats.protocol_errors >= 2


async def test_a_stalled_server_times_out(server: LocalServer, jump_clock: trio.testing.MockClock) -> None:
    server.faults.stall_after_audio_messages = 1
    with trio.fail_after(600):
        async with synth_for(server, audio_timeout=5) as synth:
            got = 0
            with pytest.raises(SynthesisTimeout):
                async with synth.speak(LONG_TEXT) as utterance:
                    async for _ in utterance:
                        got += 1
    assert got == 1


async def test_slow_consumer_gets_what_was_buffered_then_an_error(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server, max_buffered_audio=0.25) as synth:
            async with synth.speak(LONG_TEXT) as utterance:
                await reader_caught_up(synth, server)
                assert utterance.state == "failed"
                delivered = 0
                with pytest.raises(SlowConsumerError):
                    async for chunk in utterance:
                        delivered += len(chunk.audio)
    assert delivered == utterance.metrics.audio_bytes > 0
    assert delivered <= 0.25 * 16000 * 2


async def test_connection_refused_is_a_connect_error(jump_clock: trio.testing.MockClock) -> None:
    async with open_local_server(engine="signal") as server:
        url = server.url
    with trio.fail_after(600), pytest.raises(ConnectError):
        async with open_synthesizer(base_url=url, voice_id=DEFAULT_VOICE_ID, max_reconnect_attempts=2):
            pass  # pragma: no cover


async def test_rejected_handshake_is_retried_then_raised(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.handshake_statuses = [503] * 3  # the first attempt and two more
    with trio.fail_after(600), pytest.raises(ServerError) as info:
        async with synth_for(server, max_reconnect_attempts=2):
            pass  # pragma: no cover
    assert info.value.status == 503
    assert server.log.connections_opened == 0
    assert server.faults.handshake_statuses == []


async def test_errors_in_the_block_are_not_wrapped_in_a_group(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(KeyError):
        async with synth_for(server):
            raise KeyError("mine")


async def test_bad_arguments_are_configuration_errors(server: LocalServer) -> None:
    with pytest.raises(ConfigurationError):
        async with open_synthesizer(base_url=server.url, voice_id=None):
            pass  # pragma: no cover
    with pytest.raises(ConfigurationError):
        async with synth_for(server, sample_rate=1000):
            pass  # pragma: no cover
    with pytest.raises(ConfigurationError):
        async with open_synthesizer(base_url="https://api.async.com", voice_id="v", api_key=""):
            pass  # pragma: no cover
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            with pytest.raises(ConfigurationError):
                async with synth.speak("   "):
                    pass  # pragma: no cover
            with pytest.raises(ConfigurationError):
                async with synth.speak(42):
                    pass  # pragma: no cover


# --------------------------------------------------------------- settings


async def test_settings_changes_apply_from_the_next_utterance(server: LocalServer) -> None:
    other_voice = next(v.voice_id for v in PREDEFINED_VOICES if v.voice_id != DEFAULT_VOICE_ID)
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            first = await speak_all(synth, "Which voice?")
            synth.update_settings(voice_id=other_voice, language="en-US")
            assert synth.settings.language == "en"
            second = await speak_all(synth, "Which voice?")
            assert synth.statistics().connections_opened == 2
    inits = [conn.messages[0] for conn in server.log.connections]
    assert inits[0]["voice"]["id"] == DEFAULT_VOICE_ID
    assert inits[1]["voice"]["id"] == other_voice
    assert inits[1]["language"] == "en"
    assert first != second


# ----------------------------------------------------------- structure


async def test_no_task_outlives_the_synthesizer(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            await speak_all(synth, "Count my tasks.")
            assert tasks_named("trio_asyncai._websocket")
            assert tasks_named("trio_websocket")
    assert tasks_named("trio_asyncai._websocket") == []
    assert tasks_named("trio_websocket") == []


def test_runs_under_anyio_with_the_trio_backend() -> None:
    import anyio

    async def main() -> bytes:
        async with open_local_server(engine="signal") as server, synth_for(server) as synth:
            return await speak_all(synth, "Hello from anyio.")

    assert anyio.run(main, backend="trio")


def test_public_names_are_exported() -> None:
    for name in ("open_synthesizer", "Synthesizer", "Utterance", "AudioChunk", "AsyncAIError"):
        assert hasattr(trio_asyncai, name)


async def test_old_connection_finishes_its_utterance_then_closes(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    other_voice = next(v.voice_id for v in PREDEFINED_VOICES if v.voice_id != DEFAULT_VOICE_ID)
    server.faults.chunk_delay = 0.2
    with trio.fail_after(600):
        async with synth_for(server) as synth:
            async with synth.speak("On the first connection.") as first:
                synth.update_settings(voice_id=other_voice)
                async with synth.speak("On the second one.") as second:
                    assert synth.statistics().open_utterances == 2
                    synth.interrupt()  # interrupts both, on both connections
            assert first.interrupted and second.interrupted
            assert await speak_all(synth, "Still usable.")
            await server.log.wait_for(lambda log: log.connections[0].closed)
            assert synth.statistics().connections_opened == 2
    assert server.log.connections[0].messages[-1] == {"terminate": True}
    assert not server.log.unclosed_contexts()


async def test_an_utterance_is_a_trio_receive_channel(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.speak(LONG_TEXT) as utterance:
                channel: trio.abc.ReceiveChannel[trio_asyncai.AudioChunk] = utterance
                assert isinstance(channel, trio.abc.ReceiveChannel)
                first = await utterance.receive()
                assert first.audio
                await utterance.aclose()  # stop reading: the context is abandoned
                assert utterance.state == "closed"
                with pytest.raises(trio.ClosedResourceError):
                    await utterance.receive()
            await wait_all_contexts_closed(server)


async def test_connect_synthesizer_runs_in_the_callers_nursery(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            synth = await trio_asyncai.connect_synthesizer(
                nursery, base_url=server.url, voice_id=DEFAULT_VOICE_ID, sample_rate=16000
            )
            assert await speak_all(synth, "Bring your own nursery.")
            await synth.aclose()
            await synth.aclose()  # idempotent
            with pytest.raises(trio_asyncai.SynthesizerClosedError):
                await speak_all(synth, "Too late.")
        # The nursery could exit: nothing of the synthesizer was left running.
    assert server.log.connections[0].messages[-1] == {"terminate": True}


async def test_connect_synthesizer_reports_connection_errors(server: LocalServer) -> None:
    server.faults.handshake_statuses = [401]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            with pytest.raises(AuthenticationError):
                await trio_asyncai.connect_synthesizer(
                    nursery, base_url=server.url, voice_id=DEFAULT_VOICE_ID
                )


async def test_a_pause_in_the_text_after_a_flush_is_not_a_timeout(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(600):
        async with synth_for(server, audio_timeout=5) as synth:
            async with synth.open_utterance() as utterance, trio.open_nursery() as nursery:
                audio: list[bytes] = []

                async def listen() -> None:  # reads all along, as a player would
                    audio.append(await utterance.read_all())

                nursery.start_soon(listen)
                await utterance.send("First part. ")
                await utterance.flush()
                await server.log.wait_for(lambda log: log.connections[0].audio_messages_sent > 0)
                await trio.sleep(10)  # the LLM thinks for longer than audio_timeout
                await utterance.finish("Second part.")
    assert utterance.state == "complete"
    assert audio[0]


async def test_text_after_a_lost_connection_raises_the_real_cause(server: LocalServer) -> None:
    server.faults.drop_after_audio_messages = 1
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            async with synth.open_utterance() as utterance:
                await utterance.send("First sentence here. ")
                await utterance.flush()
                with pytest.raises(ConnectionLostError):
                    await utterance.read_all()
                with pytest.raises(ConnectionLostError):
                    await utterance.send("More text.")


@pytest.mark.parametrize("opener", [open_synthesizer, trio_asyncai.open_http_synthesizer])
async def test_speak_racing_interrupt_never_breaks_the_block(server: LocalServer, opener: Any) -> None:
    # Both synthesizers: speak() must yield its block even when an interrupt
    # lands while it sends the text.
    async def barge_in(synth: Any) -> None:  # interrupts as soon as anything is speaking
        while not synth.statistics().open_utterances:
            await trio.lowlevel.checkpoint()
        synth.interrupt()

    outcomes = []
    with trio.fail_after(TIMEOUT):
        async with opener(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as synth:
            for _ in range(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(barge_in, synth)
                    async with synth.speak("Race me.") as u:
                        await u.read_all()
                    outcomes.append(u.state)
            await wait_all_contexts_closed(server)
    assert set(outcomes) <= {"interrupted", "complete"}
    assert "interrupted" in outcomes


async def test_a_callers_own_exception_group_comes_back_as_a_group(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ExceptionGroup) as info:
        async with synth_for(server):
            raise ExceptionGroup("mine", [KeyError("k")])
    assert info.value.message == "mine"
    assert isinstance(info.value.exceptions[0], KeyError)


async def test_a_peer_that_is_no_http_server_is_a_connect_error(jump_clock: trio.testing.MockClock) -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"SSH-2.0-OpenSSH_9.9\r\n\r\n")

    with trio.fail_after(600):
        async with tcp_peer(garbage) as peer:
            with pytest.raises(ConnectError, match="handshake"):
                async with open_synthesizer(base_url=peer.url, voice_id="v", max_reconnect_attempts=1):
                    pass  # pragma: no cover


async def test_a_silent_peer_is_a_connect_timeout(jump_clock: trio.testing.MockClock) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    with trio.fail_after(600):
        async with tcp_peer(silent) as peer:
            with pytest.raises(SynthesisTimeout):
                async with open_synthesizer(
                    base_url=peer.url, voice_id="v", connect_timeout=3, max_reconnect_attempts=1
                ):
                    pass  # pragma: no cover


async def test_reconnects_after_drops_back_off(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    server.faults.drop_after_audio_messages = 1
    opened_at: list[float] = []
    with trio.fail_after(600):
        async with synth_for(server, reconnect_backoff=1.0) as synth:
            for _ in range(4):
                with pytest.raises(ConnectionLostError):
                    await speak_all(synth, LONG_TEXT)
                opened_at.append(trio.current_time())
            server.faults.drop_after_audio_messages = None
            assert await speak_all(synth, "Steady again.")
            start = trio.current_time()
            assert await speak_all(synth, "And no more waiting.")
            assert trio.current_time() - start < 1.0  # a success reset the backoff
    gaps = [b - a for a, b in itertools.pairwise(opened_at)]
    assert gaps[0] >= 1.0
    assert gaps[1] >= 2.0
    assert gaps[2] >= 4.0
