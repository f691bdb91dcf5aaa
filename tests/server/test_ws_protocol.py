"""The WebSocket protocol after the init: text, audio, finals, contexts, keepalives, closing."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed

from trio_asyncai.server import LocalServer
from trio_asyncai.server import _websocket as server_websocket

from .helpers import TIMEOUT, GatedEngine, audio_of, close_of, connect, init_message, s16, signal_bytes


async def test_text_audio_final(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("Hello there, how are you? ", "ctx-1")
            messages = await client.until_finals("ctx-1")
    *audio, final = messages
    assert final == {"audio": "", "final": True, "context_id": "ctx-1"}
    assert audio
    for message in audio:
        assert set(message) == {"audio", "final", "context_id"}
        assert message["final"] is False
        assert message["context_id"] == "ctx-1"
        chunk = base64.b64decode(message["audio"])
        # Whole samples, at most 80 ms each.
        assert 0 < len(chunk) <= 0.08 * 24000 * 2
        assert len(chunk) % 2 == 0
    data = audio_of(messages, "ctx-1")
    assert len(data) == signal_bytes("Hello there, how are you?")
    assert int(abs(s16(data)).max()) > 1000


async def test_default_context_has_no_context_id(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("Hi. ")
            messages = await client.until_finals(None)
    assert all("context_id" not in m for m in messages)
    assert messages[-1] == {"audio": "", "final": True}
    assert server.log.connections[0].contexts_opened == [None]


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
@pytest.mark.parametrize("sample_rate", [8000, 16000, 24000, 44100, 48000])
async def test_bytes_match_format(server: LocalServer, encoding: str, sample_rate: int) -> None:
    text = "One two three four five. "
    with trio.fail_after(TIMEOUT):
        async with connect(server, init_message(encoding=encoding, sample_rate=sample_rate)) as client:
            await client.finish(text, "c")
            data = audio_of(await client.until_finals("c"), "c")
    width = 4 if encoding == "pcm_f32le" else 2
    samples = signal_bytes(text) // 2 * sample_rate // 24000
    assert len(data) % width == 0
    assert abs(len(data) // width - samples) <= 2
    if encoding == "pcm_f32le":
        import numpy as np

        values = np.frombuffer(data, dtype="<f4")
        assert np.isfinite(values).all()
        assert float(abs(values).max()) <= 1.0


async def test_float_is_twice_the_bytes_of_int16(server: LocalServer) -> None:
    sizes = []
    with trio.fail_after(TIMEOUT):
        for encoding in ("pcm_s16le", "pcm_f32le"):
            async with connect(server, init_message(encoding=encoding, sample_rate=22050)) as client:
                await client.finish("The same text both times. ", "c")
                sizes.append(len(audio_of(await client.until_finals("c"), "c")))
    assert sizes[1] == 2 * sizes[0]


async def test_complete_sentences_are_spoken_without_force(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.text("First sentence. Second ", "c")
            await client.text("half", "c")
            # Processed in order: when "other"'s final comes back, "c" was handled.
            await client.finish("Done. ", "other")
            messages = await client.until_finals("other")
            record = server.log.connections[0]
            assert record.jobs[0] == ("c", "First sentence. ", False)
            assert ("c", "Second half", False) not in record.jobs
            await client.finish(" sentence! And more", "c")
            messages += await client.until_finals("c")
    # The force takes the rest; the close then finds nothing left to speak.
    assert record.jobs[-2:] == [("c", "Second half sentence! And more", True), ("c", "", True)]
    assert len(audio_of(messages, "c")) == signal_bytes("First sentence.") + signal_bytes(
        "Second half sentence! And more"
    )


async def test_force_is_answered_with_audio_and_no_final(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.text("One. ", "c", force=True)
            await client.text("Two. ", "c", force=True)
            await client.text(" ", "c", force=True)  # a flush with nothing buffered
            # All the forced audio arrives while the context is still open...
            expected = signal_bytes("One.") + signal_bytes("Two.")
            before_close: list[dict[str, Any]] = []
            while len(audio_of(before_close, "c")) < expected:
                before_close.append(await client.receive())
            # ...and the close is answered by exactly one final, after any audio left.
            await client.close_context("c")
            after_close = await client.until_finals("c")
            await client.finish("Check. ", "z")
            after_close += await client.until_finals("z")
    assert not any(m.get("final") for m in before_close)
    assert len(audio_of(before_close, "c")) == expected
    assert audio_of(after_close, "c") == b""
    finals = [m for m in after_close if m.get("final")]
    assert finals == [{"audio": "", "final": True, "context_id": c} for c in ("c", "z")]
    assert server.log.connections[0].finals_sent == 2


async def test_close_context_completes_the_audio_then_sends_one_final(server: LocalServer) -> None:
    text = "Text that was never forced, then closed at once"
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.text(text, "c")
            await client.close_context("c")
            messages = await client.until_finals("c")
    assert [m.get("context_id") for m in messages] == ["c"] * len(messages)
    assert messages[-1] == {"audio": "", "final": True, "context_id": "c"}
    assert not any(m.get("final") for m in messages[:-1])
    assert len(audio_of(messages, "c")) == signal_bytes(text)


async def test_contexts_run_concurrently(gated_server: LocalServer, gate: GatedEngine) -> None:
    """A context held mid-synthesis does not hold up another one."""
    with trio.fail_after(TIMEOUT):
        async with connect(gated_server) as client:
            await client.finish("hold one two three four five six seven eight nine. ", "slow")
            await trio.to_thread.run_sync(gate.held.wait)
            await client.finish("Quick. ", "fast")
            before_release = await client.until_finals("fast")
            gate.release.set()
            after_release = await client.until_finals("slow")
    assert [m for m in before_release if m.get("final")] == [
        {"audio": "", "final": True, "context_id": "fast"}
    ]
    assert len(audio_of(before_release, "fast")) == signal_bytes("Quick.")
    slow = audio_of(before_release, "slow") + audio_of(after_release, "slow")
    assert len(slow) == signal_bytes("hold one two three four five six seven eight nine.")


async def test_interleaved_contexts_keep_their_own_order(server: LocalServer) -> None:
    texts = {f"ctx-{i}": " ".join(["word"] * (10 + 5 * i)) + ". " for i in range(4)}
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            for context_id, text in texts.items():
                await client.finish(text, context_id)
            messages = await client.until_finals(*texts)
    for context_id, text in texts.items():
        data = audio_of(messages, context_id)
        assert len(data) == signal_bytes(text)
        # In order: identical to what the engine makes for the text alone.
        async with connect(server) as client:
            await client.finish(text, "alone")
            assert audio_of(await client.until_finals("alone"), "alone") == data
    assert server.log.contexts_opened == 4 + 4


async def test_close_context_does_not_cut_the_audio(gated_server: LocalServer, gate: GatedEngine) -> None:
    """An interrupted context is closed like any other: its audio still comes, then its final."""
    text = "hold this one for a long long while. "
    with trio.fail_after(TIMEOUT):
        async with connect(gated_server) as client:
            await client.text(text, "a", force=True)
            first = await client.receive()
            assert first["context_id"] == "a"
            assert first["final"] is False
            await client.close_context("a")
            await client.finish("Next. ", "b")
            rest = await client.until_finals("b")
            gate.release.set()
            rest += await client.until_finals("a")
    assert len(audio_of([first, *rest], "a")) == signal_bytes(text)
    assert rest[-1] == {"audio": "", "final": True, "context_id": "a"}
    assert server_log_counts(gated_server) == (2, 2)
    assert gated_server.log.unclosed_contexts() == []


async def test_no_final_on_close_fault(gated_server: LocalServer, gate: GatedEngine) -> None:
    """The fault brings back what the service does not do: a close that drops the audio, and no final."""
    gated_server.faults.no_final_on_close = True
    with trio.fail_after(TIMEOUT):
        async with connect(gated_server) as client:
            await client.text("hold this one for a long long while. ", "a", force=True)
            first = await client.receive()
            assert first["context_id"] == "a"
            await client.close_context("a")
            await gated_server.log.wait_for(lambda log: log.contexts_closed == 1)
            gate.release.set()
            gated_server.faults.no_final_on_close = False
            await client.finish("Next. ", "b")
            rest = await client.until_finals("b")
    # Only what was on its way before the close: nothing of "a" once "b" speaks, and no final for "a".
    first_b = next(i for i, m in enumerate(rest) if m.get("context_id") == "b")
    assert all(m.get("context_id") == "b" for m in rest[first_b:])
    assert not any(m.get("final") and m.get("context_id") == "a" for m in rest)


async def test_final_per_force_fault(server: LocalServer) -> None:
    server.faults.final_per_force = True
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.text("One. ", "c", force=True)
            messages = await client.until_finals("c")
            await client.close_context("c")
            messages += await client.until_finals("c")
    assert len(audio_of(messages, "c")) == signal_bytes("One.")
    assert [m for m in messages if m.get("final")] == [{"audio": "", "final": True, "context_id": "c"}] * 2


def server_log_counts(server: LocalServer) -> tuple[int, int]:
    return server.log.contexts_opened, server.log.contexts_closed


async def test_context_id_can_be_reused_after_close(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            for _ in range(3):
                await client.finish("Again. ", "same")
                messages = await client.until_finals("same")
                assert len(audio_of(messages, "same")) == signal_bytes("Again.")
            await server.log.wait_for(lambda log: log.contexts_closed == 3)
    assert server.log.contexts_opened == 3
    assert server.log.unclosed_contexts() == []


async def test_keepalive_is_never_synthesized(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.send({"transcript": " "})
            await client.text("Start of a sentence", "c")
            await client.send({"transcript": " ", "context_id": "c"})
            await client.send({"transcript": "\n\t ", "context_id": "never-opened"})
            await client.finish("ends here. ", "c")
            messages = await client.until_finals("c")
    record = server.log.connections[0]
    assert server.log.keepalives == 3
    assert record.contexts_opened == ["c"]
    assert record.jobs == [("c", "Start of a sentence ends here. ", True), ("c", "", True)]
    assert len(audio_of(messages, "c")) == signal_bytes("Start of a sentence ends here.")


@pytest.mark.parametrize("message", [{"terminate": True}, {"text": ""}])
async def test_close_connection(server: LocalServer, message: dict[str, object]) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("A long sentence that will not be spoken in full. ", "c")
            await client.send(message)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await client.receive()
            await server.log.wait_for(lambda log: log.connections_closed == 1)
    assert close_of(closed.value)[0] == 1000
    assert server.log.connections[0].close_code == 1000


@pytest.mark.parametrize(
    "bad",
    [
        "not json at all",
        "[1, 2]",
        '{"transcript": 5, "context_id": "c"}',
        '{"transcript": "x", "context_id": 5}',
        '{"transcript": "x", "context_id": "c", "force": "yes"}',
        '{"something": "else"}',
        '{"model_id": "m", "voice": {"mode": "id", "id": "x"}}',
    ],
)
async def test_malformed_message_is_answered_and_the_connection_survives(
    server: LocalServer, bad: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.ws.send_message(bad)
            error = await client.receive()
            assert error["error_code"] == "INVALID_REQUEST"
            assert isinstance(error["message"], str)
            if '"context_id": "c"' in bad:
                assert error["context_id"] == "c"
            await client.finish("Still here. ", "ok")
            messages = await client.until_finals("ok")
    assert len(audio_of(messages, "ok")) == signal_bytes("Still here.")


async def test_binary_frame_with_json_is_read_like_text(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.ws.send_message(b'{"transcript": "Bytes. ", "context_id": "b", "force": true}')
            await client.ws.send_message(b'{"context_id": "b", "close_context": true, "transcript": ""}')
            messages = await client.until_finals("b")
    assert audio_of(messages, "b")


async def test_engine_failure_is_an_error_message(server: LocalServer) -> None:
    class Broken:
        name = "broken"
        native_sample_rate = 24000

        def synthesize(self, text: str, voice: object) -> list[object]:
            raise RuntimeError("engine on fire")

    server.state.engine = Broken()  # type: ignore[assignment]
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.text("Boom. ", "c", force=True)
            error = await client.receive()
            await client.close_context("c")
            after = await client.until_finals("c")
    request_id = error.pop("request_id")
    assert isinstance(request_id, str)
    assert request_id
    assert error == {
        "error_code": "INTERNAL_SERVER_ERROR",
        "message": "synthesis failed",
        "extra": None,
        "context_id": "c",
    }
    # The context still ends as any other: a final after its close.
    assert after == [{"audio": "", "final": True, "context_id": "c"}]


async def test_log_records_messages_in_order(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            await client.finish("Hi. ", "c")
            await client.until_finals("c")
            await client.send({"terminate": True})
            await server.log.wait_for(lambda log: log.connections_closed == 1)
    record = server.log.connections[0]
    kinds = [next(iter(m)) for m in record.messages]
    assert kinds == ["model_id", "transcript", "close_context", "terminate"]
    assert record.query == {"api_key": "***", "version": "v1"}
    assert record.audio_messages_sent >= 1
    assert record.closed


async def test_text_in_small_pieces_is_scanned_once(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unfinished text sent piece by piece: each piece costs a scan of itself, not of all held so far."""
    scanned: list[int] = []
    from trio_asyncai.server._audio import split_complete_sentences as real

    def recording(buffer: str, start: int = 0, *, language: str | None = None) -> tuple[str, str]:
        scanned.append(len(buffer) - start)
        return real(buffer, start, language=language)

    monkeypatch.setattr(server_websocket, "split_complete_sentences", recording)
    with trio.fail_after(TIMEOUT):
        async with connect(server) as client:
            for _ in range(200):
                await client.text("word ", "c")
            await client.close_context("c")
            await client.until_finals("c")
    assert len(scanned) == 200
    assert max(scanned) <= len("word ") + 1
