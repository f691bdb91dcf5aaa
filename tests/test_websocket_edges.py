"""The WebSocket synthesizer at its edges: cancellation from outside, interrupts, races, backoff, hung peers.

Each test here pins down one way it used to go wrong, against the local
server in its default, reference-shaped mode.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import types
from typing import Any

import pytest
import trio
import trio.testing
from helpers import TIMEOUT, synth_for

import trio_asyncai
from trio_asyncai import (
    ConnectionLostError,
    NotFoundError,
    RateLimitError,
    ServerError,
    SynthesisTimeout,
    SynthesizerClosedError,
    open_synthesizer,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer

# ------------------------------------------------------- cancelled from outside


async def test_cancelled_from_outside_it_still_closes_politely(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        with trio.CancelScope() as outer:
            async with synth_for(server) as synth:
                async with synth.open_utterance() as utterance:
                    await utterance.send("Text the service has, and an utterance still open. ")
                    await server.log.wait_for(lambda log: bool(log.contexts_opened))
                    outer.cancel()
                    await trio.sleep_forever()
        assert outer.cancelled_caught
        await server.log.wait_for(lambda log: log.connections_closed == 1)
    record = server.log.connections[0]
    # What was queued went out: the context's close, then terminate, then the close frame.
    assert record.contexts_closed == [utterance.context_id]
    assert record.messages[-1] == {"terminate": True}
    assert record.close_code == 1000


@pytest.mark.parametrize("method", ["send", "flush", "finish"])
async def test_text_after_interrupt_in_the_same_task_cancels_the_block(
    server: LocalServer, method: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            reached_the_end = False
            async with synth.open_utterance() as utterance:
                await utterance.send("Some words. ")
                utterance.interrupt()
                if method == "send":
                    await utterance.send("more")
                elif method == "flush":
                    await utterance.flush()
                else:
                    await utterance.finish("more")
                reached_the_end = True  # pragma: no cover
            assert not reached_the_end
            # From outside the block the utterance is simply closed.
            with pytest.raises(SynthesizerClosedError):
                await utterance.send("after the block")


# ------------------------------------------------------------- racing aclose()


@pytest.mark.parametrize("checkpoints", range(40))
@pytest.mark.parametrize("how", ["speak", "open_utterance"])
async def test_an_utterance_racing_aclose_gets_synthesizer_closed(
    server: LocalServer, checkpoints: int, how: str
) -> None:
    """Whichever checkpoint aclose() lands on, the utterance fails as closed, nothing else."""
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:

            async def close_after_checkpoints() -> None:
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()
                await synth.aclose()

            outcome: BaseException | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(close_after_checkpoints)
                try:
                    if how == "speak":
                        async with synth.speak("Racing the close.") as utterance:
                            await utterance.read_all()
                    else:
                        async with synth.open_utterance() as utterance:
                            await utterance.send("Racing ")
                            await utterance.finish("the close.")
                            await utterance.read_all()
                except Exception as exc:
                    outcome = exc
        await server.log.wait_for(lambda log: log.connections_closed == log.connections_opened)
    # Either it was fast enough to finish, or it was closed: never another error.
    assert outcome is None or isinstance(outcome, SynthesizerClosedError), repr(outcome)
    assert server.log.unclosed_contexts() == []


# ------------------------------------------------------------------- backoff


async def _speak_timed(synth: Any) -> float:
    """Trio time one utterance took, from asking to its end."""
    start = trio.current_time()
    async with synth.speak("Timed.") as utterance:
        assert await utterance.read_all()
    return trio.current_time() - start


async def test_a_refused_handshake_that_will_not_pass_does_not_grow_the_backoff(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(600):
        async with synth_for(server, reconnect_backoff=5.0) as synth:
            server.faults.handshake_statuses = [404]  # VERSION_NOT_FOUND: no retry helps
            synth.update_settings(voice_id=PREDEFINED_VOICES[1].voice_id)
            with pytest.raises(NotFoundError):
                await _speak_timed(synth)
            assert server.faults.handshake_statuses == []  # one attempt, not retried
            synth.update_settings(voice_id=PREDEFINED_VOICES[2].voice_id)
            took = await _speak_timed(synth)
    assert took < 1.0  # no 5 s wait for a refusal that was not worth a retry


async def test_a_good_connect_resets_the_backoff_of_failed_ones(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(600):
        async with synth_for(server, reconnect_backoff=1.0, connect_timeout=60) as synth:
            server.faults.handshake_statuses = [503] * 4
            synth.update_settings(voice_id=PREDEFINED_VOICES[1].voice_id)
            with pytest.raises(ServerError):
                await _speak_timed(synth)  # four failed attempts: the backoff is at 8 s
            assert server.faults.handshake_statuses == []
            await _speak_timed(synth)  # waits its turn once, then connects
            server.faults.drop_after_audio_messages = 1
            with pytest.raises(ConnectionLostError):
                await _speak_timed(synth)
            server.faults.drop_after_audio_messages = None
            took = await _speak_timed(synth)
    # Two drops since a good connect (the utterance lost before any audio
    # moved once, then lost again): the second step of the backoff (2 to 3
    # s), not the 32 s that the four failed attempts before would add.
    assert 2.0 <= took < 3.5


async def test_a_rate_limited_close_backs_off(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(600):
        async with synth_for(server, reconnect_backoff=3.0) as synth:
            async with synth.open_utterance() as utterance:
                await utterance.send("Held open. ")
                connection = synth._connection
                assert connection is not None
                connection._lose(RateLimitError("slow down", code="RATE_LIMIT_EXCEEDED"))
                with pytest.raises(RateLimitError):
                    await utterance.read_all()
            took = await _speak_timed(synth)
    assert 3.0 <= took < 5.0


async def test_backoff_waits_are_jittered(server: LocalServer, jump_clock: trio.testing.MockClock) -> None:
    server.faults.drop_after_audio_messages = 1
    waits: list[float] = []
    with trio.fail_after(600):
        async with synth_for(server, reconnect_backoff=1.0) as synth:
            for _ in range(5):
                start = trio.current_time()
                with pytest.raises(ConnectionLostError):
                    async with synth.speak("Dropped again and again.") as utterance:
                        await utterance.read_all()
                waits.append(trio.current_time() - start)
    steps = [1.0, 2.0, 4.0, 8.0]
    for wait, step in zip(waits[1:], steps, strict=True):
        assert step <= wait < 1.5 * step + 0.5
    # Not exactly the doubling: drawn from [d, 1.5 d).
    assert any(wait - step > 0.01 for wait, step in zip(waits[1:], steps, strict=True))


# ------------------------------------------------------------ a hung service


async def test_a_hung_service_fails_entering_within_connect_timeout(
    jump_clock: trio.testing.MockClock,
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, silent, 0)
            port = listeners[0].socket.getsockname()[1]
            start = trio.current_time()
            with pytest.raises(SynthesisTimeout):
                async with open_synthesizer(base_url=f"http://127.0.0.1:{port}", voice_id="v"):
                    pass  # pragma: no cover
            took = trio.current_time() - start
            nursery.cancel_scope.cancel()
    # The default connect_timeout, retries included: not four times it.
    assert 10.0 <= took < 11.0


# ------------------------------------------------------------ the key in locals


async def test_no_long_lived_frame_holds_the_key(server: LocalServer) -> None:
    """Error reporters record frame locals: no suspended frame of the SDK may hold the key.

    Every coroutine and generator frame of trio_asyncai's code that is alive
    while an utterance plays (the synthesizer's tasks, and the ``open_*``
    context managers suspended at their ``yield``). The local server's own
    frames, in this process too, are not the SDK's.
    """
    key = "sk_secret_do_not_leak_0123456789"

    def leaks() -> list[str]:
        found = []
        for obj in gc.get_objects():
            if isinstance(obj, types.CoroutineType):
                frame = obj.cr_frame
            elif isinstance(obj, types.AsyncGeneratorType):
                frame = obj.ag_frame
            elif isinstance(obj, types.GeneratorType):
                frame = obj.gi_frame
            else:
                continue
            if frame is None:
                continue
            filename = frame.f_code.co_filename.replace("\\", "/")
            if "/trio_asyncai/" not in filename or "/trio_asyncai/server/" in filename:
                continue
            for name, value in frame.f_locals.items():
                if (isinstance(value, str) and key in value) or key in repr(value):
                    found.append(f"{frame.f_code.co_name}: {name}")
        return found

    with trio.fail_after(TIMEOUT):
        async with synth_for(server, api_key=key) as synth:
            async with synth.speak("Hello.") as utterance:
                await utterance.read_all()
                websocket = leaks()
        async with trio_asyncai.open_http_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, api_key=key
        ) as http:
            async with http.speak("Hello.") as utterance:
                await utterance.read_all()
                over_http = leaks()
        async with trio_asyncai.open_client(base_url=server.url, api_key=key) as client:
            await client.status()
            rest = leaks()
        async with trio.open_nursery() as nursery:
            twins = []
            for connect in (trio_asyncai.connect_synthesizer, trio_asyncai.connect_http_synthesizer):
                speaker = await connect(nursery, base_url=server.url, voice_id=DEFAULT_VOICE_ID, api_key=key)
                async with speaker.speak("Hello.") as utterance:
                    await utterance.read_all()
                twins += leaks()
                await speaker.aclose()
    assert websocket == []
    assert over_http == []
    assert rest == []
    assert twins == []


async def test_a_connection_near_the_services_idle_limit_is_not_used_for_a_new_utterance(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    """Without keepalives, the service's idle close could cross the next utterance's first text."""
    with trio.fail_after(600):
        async with synth_for(server, keepalive_interval=None) as synth:
            await _speak_timed(synth)
            await trio.sleep(40)  # well within the service's 60 s: the same connection
            await _speak_timed(synth)
            assert synth.statistics().connections_opened == 1
            await trio.sleep(55)  # close to it: a fresh connection instead
            await _speak_timed(synth)
            assert synth.statistics().connections_opened == 2
    assert server.log.unclosed_contexts() == []


# ------------------------------------------- lost before any audio: moved once


async def test_an_utterance_lost_before_any_audio_moves_to_a_new_connection(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(600):
        async with synth_for(server) as synth:
            await _speak_timed(synth)  # the connection has sent audio: the fault drops it now
            server.faults.drop_after_audio_messages = 0
            async with synth.open_utterance() as utterance:
                await utterance.send("Said once, ")
                await utterance.finish("heard once.")
                # Dropped at its first audio; it waits out the backoff meanwhile.
                await server.log.wait_for(lambda log: log.connections_closed == 1)
                server.faults.drop_after_audio_messages = None
                audio = await utterance.read_all()
            opened = synth.statistics().connections_opened
            await server.log.wait_for(lambda log: not log.unclosed_contexts())
    assert utterance.state == "complete"
    assert audio
    assert opened == 2
    # The second connection got the whole utterance, in order.
    second = [m for m in server.log.connections[1].messages if m.get("context_id") == utterance.context_id]
    assert second == [
        {"transcript": "Said once, ", "context_id": utterance.context_id},
        {"transcript": "heard once. ", "context_id": utterance.context_id, "force": True},
        {"close_context": True, "transcript": "", "context_id": utterance.context_id},
    ]


async def test_an_utterance_that_had_audio_is_not_moved(server: LocalServer) -> None:
    server.faults.drop_after_audio_messages = 1
    with trio.fail_after(TIMEOUT):
        async with synth_for(server) as synth:
            received = 0
            with pytest.raises(ConnectionLostError):
                async with synth.speak("Long enough to need a few messages, surely.") as utterance:
                    async for chunk in utterance:
                        received += len(chunk.audio)
            assert received > 0  # heard in part: saying it again would repeat it
            assert synth.statistics().connections_opened == 1


async def test_a_reader_already_waiting_gets_the_audio_timeout_after_the_finish(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    """The clock starts at the finish even when the reader was waiting before it."""
    server.faults.no_final_on_close = True
    with trio.fail_after(600):
        async with synth_for(server, audio_timeout=5.0) as synth:
            async with synth.open_utterance() as utterance, trio.open_nursery() as nursery:

                async def feed() -> None:
                    await trio.sleep(1)  # the reader is waiting by now
                    await utterance.finish("Never ends.")

                nursery.start_soon(feed)
                start = trio.current_time()
                with pytest.raises(SynthesisTimeout):
                    await utterance.read_all()
                took = trio.current_time() - start
    assert 6.0 <= took < 7.0  # one second of text, then the five of audio_timeout


# --------------------------------------------- moving and closing, under races


async def test_speak_racing_aclose_during_the_backoff_is_synthesizer_closed(
    server: LocalServer, jump_clock: trio.testing.MockClock
) -> None:
    """aclose() lands while speak() waits out the backoff before a new connection."""
    result: list[BaseException | None] = []
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            synth = await trio_asyncai.connect_synthesizer(
                nursery, base_url=server.url, voice_id=DEFAULT_VOICE_ID, reconnect_backoff=1.0
            )
            for _ in range(2):  # as after two connections lost under utterances
                synth._backoff.failed("drop")
            synth.update_settings(voice_id=PREDEFINED_VOICES[1].voice_id)  # a new connection is needed

            async def talk() -> None:
                try:
                    async with synth.speak("Hello.") as utterance:
                        await utterance.read_all()
                    result.append(None)
                except BaseException as exc:
                    result.append(exc)

            nursery.start_soon(talk)
            await trio.sleep(0.5)  # well inside the 2 s backoff
            await synth.aclose()
    assert len(result) == 1
    assert isinstance(result[0], SynthesizerClosedError), repr(result[0])
    assert server.log.connections_opened == 1  # nothing was opened after the close


_GUID: bytes = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def _accept_handshake(stream: trio.SocketStream) -> bytes:
    request = b""
    while b"\r\n\r\n" not in request:
        request += await stream.receive_some(65536)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


async def test_a_moved_utterance_never_waits_on_a_connection_that_died_as_it_opened(
    jump_clock: trio.testing.MockClock,
) -> None:
    """The first connection drops after the text; the next one closes as soon as it opens."""
    connections = 0

    async def peer(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        async with stream:
            answer = await _accept_handshake(stream)
            if connections % 2 == 1:
                await stream.send_all(answer)
                received = b""
                while received.count(b"\x81") < 2:  # the init and the text, as masked text frames
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    received += data
            else:
                await stream.send_all(answer + b"\x88\x02\x03\xe8")  # the 101 and a close frame together
                with trio.move_on_after(1):
                    while await stream.receive_some(65536):
                        pass

    outcomes: list[str] = []
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, peer, 0)
            port = listeners[0].socket.getsockname()[1]
            for _ in range(20):
                connections = 0
                outcome = "hung"
                async with open_synthesizer(
                    base_url=f"http://127.0.0.1:{port}",
                    voice_id="v",
                    audio_timeout=None,
                    keepalive_interval=None,
                    reconnect_backoff=0.001,
                    max_reconnect_attempts=0,
                ) as synth:
                    async with synth.speak("Hello there.") as utterance:
                        with trio.move_on_after(30):
                            try:
                                await utterance.read_all()
                                outcome = "complete"
                            except trio_asyncai.AsyncAIError as exc:
                                outcome = type(exc).__name__
                outcomes.append(outcome)
            nursery.cancel_scope.cancel()
    assert set(outcomes) == {"ConnectionLostError"}, outcomes
