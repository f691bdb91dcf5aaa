"""Frames through pipelines: both TTS stages against the local server, a scripted LLM, barge-ins."""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from helpers import TIMEOUT, Peer, tasks_named, tcp_peer

import trio_asyncai
from trio_asyncai import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    HttpTTS,
    Language,
    NotFoundError,
    Pipeline,
    PipelineParams,
    PipelineTask,
    WebSocketTTS,
    current_params,
)
from trio_asyncai._aggregator import SentenceAggregator
from trio_asyncai._options import HttpOptions, StageOwnOptions, WebSocketOptions
from trio_asyncai.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    MetricsFrame,
    SystemFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSUpdateSettingsFrame,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, PREDEFINED_VOICES, LocalServer, open_local_server

STREAMING = "/text_to_speech/streaming"
OTHER_VOICE = next(v.voice_id for v in PREDEFINED_VOICES if v.voice_id != DEFAULT_VOICE_ID)

TRICKY = (
    "Dr. Smith paid $3.50 at 10.30 a.m. today. "
    "Then he e-mailed john.doe@example.com about the 2.5 kg parcel! "
    "Was it 12:45 already? "
    "Yes."
)
TRICKY_SENTENCES = [
    "Dr. Smith paid $3.50 at 10.30 a.m. today. ",
    "Then he e-mailed john.doe@example.com about the 2.5 kg parcel! ",
    "Was it 12:45 already? ",
    "Yes. ",
]
LONG = (
    "This answer goes on for a while. It talks about trains and weather. "
    "It mentions structured concurrency twice. Nobody will hear the end of it."
)
SHORT = "Sorry, go ahead."


# ------------------------------------------------------------------ helpers


@attrs.frozen
class Prompt(Frame):
    """A user's turn, for the scripted LLM: it answers with ``reply``."""

    reply: str


@attrs.frozen
class Marker(Frame):
    """A frame no stage knows: it must pass through unchanged, in order."""

    name: str


@attrs.frozen
class Urgent(SystemFrame):
    """A system frame of our own: forwarded at once."""

    name: str


def tokens_of(text: str) -> list[str]:
    """Cut a text as an LLM streams it: words with their leading space, punctuation apart."""
    return re.findall(r"\s*\w+|\s*[^\w\s]", text)


class ScriptedLLM:
    """A fake LLM stage: answers each Prompt token by token; an interruption cuts it short."""

    def __init__(self, token_delay: float = 0.0) -> None:
        self.token_delay = token_delay

    async def __call__(
        self, receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        idle = trio.Event()
        idle.set()
        current = trio.CancelScope()

        async def answer(reply: str, scope: trio.CancelScope, done: trio.Event) -> None:
            with scope:
                await send.send(LLMFullResponseStartFrame())
                for token in tokens_of(reply):
                    await send.send(TextFrame(token))
                    await trio.sleep(self.token_delay)
                await send.send(LLMFullResponseEndFrame())
            done.set()

        async with trio.open_nursery() as nursery:
            async for frame in receive:
                if isinstance(frame, InterruptionFrame):
                    current.cancel()
                    await idle.wait()
                    await send.send(frame)
                    continue
                await idle.wait()  # one answer at a time; other frames after it
                if isinstance(frame, Prompt):
                    current, idle = trio.CancelScope(), trio.Event()
                    nursery.start_soon(answer, frame.reply, current, idle)
                else:
                    await send.send(frame)
                    if isinstance(frame, EndFrame):
                        return


class Sink:
    """The last stage: keeps every frame, and lets a test act on them as they come."""

    def __init__(self, on_frame: Callable[[Frame], Awaitable[None]] | None = None) -> None:
        self.frames: list[Frame] = []
        self.on_frame = on_frame

    async def __call__(
        self, receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        async for frame in receive:
            self.frames.append(frame)
            if self.on_frame is not None:
                await self.on_frame(frame)
            if isinstance(frame, EndFrame):
                return

    def of(self, cls: type[Frame]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, cls)]


@attrs.define
class Spoken:
    utterance_id: str
    audio: bytes = b""


def utterances(frames: Sequence[Frame]) -> list[Spoken]:
    """The utterances in the output, checking their boundaries on the way.

    Each has one TTSStartedFrame before its audio and one TTSStoppedFrame
    after it; nothing of another utterance comes in between; a MetricsFrame
    never comes inside an utterance.
    """
    spoken: list[Spoken] = []
    current: str | None = None
    for frame in frames:
        if isinstance(frame, TTSStartedFrame):
            assert current is None, "utterances interleave"
            assert frame.utterance_id not in {s.utterance_id for s in spoken}, "started twice"
            current = frame.utterance_id
            spoken.append(Spoken(current))
        elif isinstance(frame, TTSAudioRawFrame):
            assert current is not None and frame.utterance_id == current, "audio outside its utterance"
            spoken[-1].audio += frame.audio
        elif isinstance(frame, TTSStoppedFrame):
            assert frame.utterance_id == current, "stopped without being started"
            current = None
        elif isinstance(frame, MetricsFrame):
            assert current is None, "metrics inside an utterance"
    assert current is None, "an utterance was never stopped"
    for s in spoken:
        assert s.audio, f"utterance {s.utterance_id} started without audio"
    return spoken


@attrs.frozen
class TTSFactory:
    """Makes the TTS stage under test (WebSocket or HTTP) and reads what reached the server."""

    kind: str
    server: LocalServer

    def __call__(self, **kwargs: Any) -> WebSocketTTS | HttpTTS:
        kwargs.setdefault("voice_id", DEFAULT_VOICE_ID)
        cls = WebSocketTTS if self.kind == "websocket" else HttpTTS
        return cls(base_url=self.server.url, **kwargs)

    def sent_texts(self) -> list[str]:
        """Each non-blank piece of text the server received, in order."""
        if self.kind == "websocket":
            return [
                m["transcript"]
                for m in self.server.log.messages
                if m.get("context_id") and m.get("transcript", "").strip()
            ]
        return [r.body["transcript"] for r in self.server.log.http if r.path == STREAMING]

    def requests_begun(self) -> int:
        """Utterances (contexts) or requests the server has begun."""
        if self.kind == "websocket":
            return self.server.log.contexts_opened
        return len([r for r in self.server.log.http if r.path == STREAMING])

    def settings_for(self, text: str) -> dict[str, Any]:
        """The voice, language and format the server used for a piece of text."""
        if self.kind == "websocket":
            for conn in self.server.log.connections:
                if any(text in m.get("transcript", "") for m in conn.messages[1:]):
                    return conn.messages[0]
        else:
            for request in self.server.log.http:
                if request.path == STREAMING and text in request.body["transcript"]:
                    return dict(request.body)
        raise AssertionError(f"the server never got {text!r}")

    async def all_closed(self) -> None:
        """Every context the server opened was closed (nothing leaks on the service)."""
        with trio.fail_after(TIMEOUT):
            await self.server.log.wait_for(lambda log: not log.unclosed_contexts())


@pytest.fixture(params=["websocket", "http"])
def tts(request: pytest.FixtureRequest, server: LocalServer) -> TTSFactory:
    return TTSFactory(request.param, server)


def assert_whole_sentences(tts: TTSFactory, sent: list[str], sentences: list[str]) -> None:
    """Each piece sent is whole sentences, in order: one each on the WebSocket, one or more over HTTP."""
    if tts.kind == "websocket":
        assert sent == sentences
        return
    rest = [s.strip() for s in sentences]
    for piece in sent:
        taken: list[str] = []
        while rest and " ".join([*taken, rest[0]]) in piece:
            taken.append(rest.pop(0))
        assert " ".join(taken) == piece.strip(), (piece, taken)
    assert rest == []


async def run(
    stages: Sequence[Any], frames: Sequence[Frame], params: PipelineParams | None = None
) -> PipelineTask:
    task = PipelineTask(Pipeline(stages), params=params)
    await task.queue_frames(frames)
    with trio.fail_after(TIMEOUT):
        await task.run()
    return task


async def reference_audio(tts: TTSFactory, frames: Sequence[Frame], **kwargs: Any) -> bytes:
    """The audio a fresh pipeline gives for these frames alone."""
    sink = Sink()
    await run([ScriptedLLM(), tts(**kwargs), sink], [*frames, EndFrame()])
    return b"".join(s.audio for s in utterances(sink.frames))


# -------------------------------------------------- utterances and sentences


async def test_a_response_is_one_utterance_sent_sentence_by_sentence(tts: TTSFactory) -> None:
    sink = Sink()
    await run([ScriptedLLM(), tts(), sink], [Prompt(TRICKY), EndFrame()])
    assert len(utterances(sink.frames)) == 1
    kinds = [type(f) for f in sink.frames if not isinstance(f, TTSAudioRawFrame)]
    assert kinds == [
        LLMFullResponseStartFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        LLMFullResponseEndFrame,
        EndFrame,
    ]
    # Abbreviations, prices, decimals, times and e-mail addresses did not
    # split a sentence; each sentence went out whole, and as soon as it was
    # complete (over HTTP, sentences complete at the same moment share a request).
    assert_whole_sentences(tts, tts.sent_texts(), TRICKY_SENTENCES)
    await tts.all_closed()


@pytest.mark.parametrize("aggregate", ["sentence", "token"])
async def test_sentences_are_cut_once_per_utterance(
    tts: TTSFactory, aggregate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One aggregator per utterance on either transport (the stage's, or the HTTP synthesizer's)."""
    made: list[str] = []
    real_init = SentenceAggregator.__init__

    def counting_init(self: SentenceAggregator, *args: Any, **kwargs: Any) -> None:
        made.append(type(self).__name__)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(SentenceAggregator, "__init__", counting_init)
    sink = Sink()
    await run([ScriptedLLM(), tts(aggregate=aggregate), sink], [Prompt(TRICKY), EndFrame()])
    assert len(utterances(sink.frames)) == 1
    expected = 0 if tts.kind == "websocket" and aggregate == "token" else 1
    assert len(made) == expected
    if tts.kind == "http" or aggregate == "sentence":
        assert_whole_sentences(tts, tts.sent_texts(), TRICKY_SENTENCES)


@pytest.mark.parametrize("aggregate", ["sentence", "token"])
async def test_the_first_sentence_is_heard_while_the_llm_still_writes(
    tts: TTSFactory, aggregate: str
) -> None:
    heard = trio.Event()

    async def llm(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
        await send.send(LLMFullResponseStartFrame())
        for token in tokens_of("The first sentence is here. And the"):
            await send.send(TextFrame(token))
        # Nothing more until the first sentence is heard: if speech waited
        # for the end of the response, this would wait until fail_after.
        await heard.wait()
        for token in tokens_of(" second one follows."):
            await send.send(TextFrame(token))
        await send.send(LLMFullResponseEndFrame())
        await send.send(EndFrame())

    async def on_frame(frame: Frame) -> None:
        if isinstance(frame, TTSAudioRawFrame):
            heard.set()

    sink = Sink(on_frame)
    await run([llm, tts(aggregate=aggregate), sink], [])
    assert len(utterances(sink.frames)) == 1
    if tts.kind == "http" or aggregate == "sentence":
        sentences = ["The first sentence is here. ", "And the second one follows. "]
        assert_whole_sentences(tts, tts.sent_texts(), sentences)


async def test_token_mode_passes_text_through_without_forcing(tts: TTSFactory) -> None:
    sink = Sink()
    await run([ScriptedLLM(), tts(aggregate="token"), sink], [Prompt(TRICKY), EndFrame()])
    assert len(utterances(sink.frames)) == 1
    assert "".join(tts.sent_texts()).strip() == TRICKY
    if tts.kind == "websocket":
        mine = [m for m in tts.server.log.messages if m.get("context_id") and "transcript" in m]
        pieces = [m for m in mine if not m.get("close_context")]
        # Streamed as the words complete (each chunk ending in one space, as
        # the reference asks), and a single flush at the end.
        assert len(tokens_of(TRICKY)) > len(pieces) > len(TRICKY.split()) // 2
        assert all(p["transcript"].endswith(" ") and not p["transcript"].endswith("  ") for p in pieces)
        assert [m.get("force", False) for m in pieces].count(True) == 1
        assert pieces[-1]["force"] is True


async def test_a_speak_frame_is_its_own_whole_utterance(tts: TTSFactory) -> None:
    sink = Sink()
    frames: list[Frame] = [
        LLMFullResponseStartFrame(),
        TextFrame("Before the interjection, "),
        TextFrame("a long preamble. And"),
        TTSSpeakFrame("Spoken whole. At once."),
        TextFrame(" after it."),
        LLMFullResponseEndFrame(),
        EndFrame(),
    ]
    await run([tts(), sink], frames)
    spoken = utterances(sink.frames)
    # The TTSSpeakFrame ended the utterance before it and is spoken between
    # that one and the rest of the response (the signal engine's audio
    # grows with the text: 44, 22 and 9 characters).
    assert len(spoken) == 3
    assert len(spoken[0].audio) > len(spoken[1].audio) > len(spoken[2].audio)
    sent = set(tts.sent_texts())
    if tts.kind == "websocket":
        assert {"Before the interjection, a long preamble. ", "And ", "after it. "} <= sent
        assert "Spoken whole. At once. " in sent  # one piece; the server cuts it
    else:
        # The synthesizer cuts: sentences ready together share a request.
        assert sent == {
            "Before the interjection, a long preamble. And",
            "Spoken whole. At once.",
            " after it.",
        }


@pytest.mark.parametrize("max_ahead", [1, 3])
async def test_utterances_come_out_in_order_while_the_next_synthesizes(
    tts: TTSFactory, jump_clock: trio.testing.MockClock, max_ahead: int
) -> None:
    tts.server.faults.chunk_delay = 0.2
    texts = ["A.", "Bb bb.", "Ccc ccc ccc.", "Dddd dddd dddd dddd."]
    begun_at_first_stop: list[int] = []

    async def on_frame(frame: Frame) -> None:
        if isinstance(frame, TTSStoppedFrame) and not begun_at_first_stop:
            begun_at_first_stop.append(tts.requests_begun())

    sink = Sink(on_frame)
    await run([tts(max_ahead=max_ahead), sink], [*(TTSSpeakFrame(t) for t in texts), EndFrame()])
    spoken = utterances(sink.frames)
    assert len(spoken) == 4
    # The signal engine's audio grows with the text: the order is the input's.
    lengths = [len(s.audio) for s in spoken]
    assert lengths == sorted(lengths) and len(set(lengths)) == 4
    # When the first utterance ended, max_ahead more were already with the
    # server: synthesizing while the first played, but no more than that.
    assert begun_at_first_stop[0] == 1 + max_ahead


async def test_the_end_comes_as_soon_as_the_server_says_so(tts: TTSFactory) -> None:
    # No audio timeout, no keepalive: if an utterance's end waited for
    # silence, this would hang until fail_after.
    kwargs: dict[str, Any] = {"audio_timeout": None}
    if tts.kind == "websocket":
        kwargs["keepalive_interval"] = None
    sink = Sink()
    await run([tts(**kwargs), sink], [TTSSpeakFrame("Done when done."), EndFrame()])
    assert len(utterances(sink.frames)) == 1


async def test_an_empty_response_says_nothing(tts: TTSFactory) -> None:
    sink = Sink()
    frames: list[Frame] = [
        LLMFullResponseStartFrame(),
        TextFrame("   "),
        LLMFullResponseEndFrame(),
        TTSSpeakFrame(" "),
        EndFrame(),
    ]
    await run([tts(), sink], frames)
    assert [type(f) for f in sink.frames] == [LLMFullResponseStartFrame, LLMFullResponseEndFrame, EndFrame]
    assert tts.requests_begun() == 0


async def test_other_frames_pass_through_unchanged_and_in_place(
    tts: TTSFactory, jump_clock: trio.testing.MockClock
) -> None:
    tts.server.faults.chunk_delay = 0.2
    markers = [Marker("a"), Marker("b"), Marker("c")]
    urgent = Urgent("now")
    frames: list[Frame] = [
        markers[0],
        TTSSpeakFrame("One two three."),
        urgent,
        markers[1],
        TTSSpeakFrame("Four."),
        markers[2],
        EndFrame(),
    ]
    sink = Sink()
    await run([tts(), sink], frames)
    spoken = utterances(sink.frames)
    started = [i for i, f in enumerate(sink.frames) if isinstance(f, TTSStartedFrame)]
    stopped = [i for i, f in enumerate(sink.frames) if isinstance(f, TTSStoppedFrame)]
    at = [next(i for i, f in enumerate(sink.frames) if f is m) for m in markers]
    assert len(spoken) == 2
    assert at[0] < started[0] and stopped[0] < at[1] < started[1] and stopped[1] < at[2]
    # The system frame did not wait for the audio before it.
    assert sink.frames.index(urgent) < started[0]
    assert sink.frames[-1] == EndFrame()


# ---------------------------------------------------------------- barge-in


async def test_a_barge_in_while_the_llm_streams_leaves_nothing_stale(
    tts: TTSFactory, jump_clock: trio.testing.MockClock
) -> None:
    reference = await reference_audio(tts, [Prompt(SHORT)])
    tts.server.log.clear()
    tts.server.faults.chunk_delay = 0.1
    task: PipelineTask | None = None

    async def on_frame(frame: Frame) -> None:
        # The user talks over the first audio, while tokens are still coming.
        if isinstance(frame, TTSAudioRawFrame) and not sink.of(InterruptionFrame):
            assert task is not None
            if len(sink.of(TTSAudioRawFrame)) == 2:
                await task.queue_frames([InterruptionFrame(), Prompt(SHORT), EndFrame()])

    sink = Sink(on_frame)
    task = PipelineTask(Pipeline([ScriptedLLM(token_delay=0.05), tts(), sink]))
    await task.queue_frame(Prompt(LONG + " " + LONG))
    with trio.fail_after(TIMEOUT * 10):
        await task.run()
    check_nothing_stale(sink.frames, reference)
    await tts.all_closed()


async def test_a_barge_in_while_started_waits_lets_no_audio_through(tts: TTSFactory) -> None:
    """The interruption comes while TTSStartedFrame waits for the next stage: no audio follows it."""
    reading = trio.Event()
    inputs: list[trio.MemoryReceiveChannel[Frame]] = []

    async def gated(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
        inputs.append(receive)
        await reading.wait()  # the next stage reads nothing yet: Started waits to be taken
        await sink(receive, send)

    sink = Sink()
    task = PipelineTask(Pipeline([tts(), gated]))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task.run)
            await task.queue_frame(TTSSpeakFrame(LONG))
            # Until the first audio is in and Started waits to be taken (audio comes over a socket).
            while not inputs or inputs[0].statistics().tasks_waiting_send == 0:
                await trio.testing.wait_all_tasks_blocked()
            await task.queue_frame(InterruptionFrame())
            await trio.testing.wait_all_tasks_blocked()  # the stage has taken the interruption
            reading.set()
            await task.queue_frame(EndFrame())
    kinds = [type(f) for f in sink.frames]
    assert kinds == [TTSStartedFrame, TTSStoppedFrame, InterruptionFrame, EndFrame]


async def test_a_barge_in_stops_every_utterance_in_flight(
    tts: TTSFactory, jump_clock: trio.testing.MockClock
) -> None:
    reference = await reference_audio(tts, [TTSSpeakFrame(SHORT)])
    tts.server.log.clear()
    tts.server.faults.chunk_delay = 0.1
    task: PipelineTask | None = None

    async def on_frame(frame: Frame) -> None:
        if isinstance(frame, TTSAudioRawFrame) and len(sink.of(TTSAudioRawFrame)) == 1:
            assert task is not None
            # Both long utterances are with the server by now.
            await tts.server.log.wait_for(lambda _: tts.requests_begun() >= 2)
            await task.queue_frames([InterruptionFrame(), TTSSpeakFrame(SHORT), EndFrame()])

    sink = Sink(on_frame)
    task = PipelineTask(Pipeline([tts(), sink]), params=PipelineParams(enable_metrics=True))
    await task.queue_frames([TTSSpeakFrame(LONG), TTSSpeakFrame(LONG + " Again.")])
    with trio.fail_after(TIMEOUT * 10):
        await task.run()
    check_nothing_stale(sink.frames, reference)
    # Both interrupted utterances still report what they cost, before the
    # InterruptionFrame; the new one after its own Stopped.
    cut = sink.frames.index(InterruptionFrame())
    assert len([f for f in sink.frames[:cut] if isinstance(f, MetricsFrame)]) == 2
    assert len([f for f in sink.frames[cut:] if isinstance(f, MetricsFrame)]) == 1
    await tts.all_closed()


async def test_no_audio_is_handed_over_once_the_stage_has_the_interruption(tts: TTSFactory) -> None:
    reference = await reference_audio(tts, [TTSSpeakFrame(SHORT)])
    tts.server.log.clear()
    task: PipelineTask | None = None

    async def on_frame(frame: Frame) -> None:
        if isinstance(frame, TTSAudioRawFrame) and len(sink.of(TTSAudioRawFrame)) == 1:
            assert task is not None
            await task.queue_frames([InterruptionFrame(), TTSSpeakFrame(SHORT), EndFrame()])
            # A slow sink: it takes no frame until everything else has settled,
            # the TTS stage's handling of the interruption included. Meanwhile
            # its output was blocked handing over the next chunk, which must
            # never arrive.
            await trio.testing.wait_all_tasks_blocked()

    sink = Sink(on_frame)
    task = PipelineTask(Pipeline([tts(), sink]))
    await task.queue_frame(TTSSpeakFrame(LONG))
    with trio.fail_after(TIMEOUT):
        await task.run()
    check_nothing_stale(sink.frames, reference)
    first_audio = next(i for i, f in enumerate(sink.frames) if isinstance(f, TTSAudioRawFrame))
    cut = sink.frames.index(InterruptionFrame())
    assert [type(f) for f in sink.frames[first_audio + 1 : cut]] == [TTSStoppedFrame]


def check_nothing_stale(frames: Sequence[Frame], reference: bytes) -> None:
    """After the InterruptionFrame, only utterances begun after it, with just their own audio."""
    spoken = utterances(frames)
    (cut,) = [i for i, f in enumerate(frames) if isinstance(f, InterruptionFrame)]
    before = {f.utterance_id for f in frames[:cut] if isinstance(f, TTSStartedFrame)}
    assert before, "the barge-in came before any audio"
    for frame in frames[cut:]:
        uid = getattr(frame, "utterance_id", None)
        assert uid is None or uid not in before, f"stale {type(frame).__name__} after the interruption"
    after = [s for s in spoken if s.utterance_id not in before]
    assert len(after) == 1
    assert after[0].audio == reference
    assert isinstance(frames[-1], EndFrame)
    errors = [f for f in frames if isinstance(f, ErrorFrame)]
    assert not errors, f"a barge-in is no error: {errors}"


async def test_an_interruption_with_nothing_in_flight_is_just_forwarded(tts: TTSFactory) -> None:
    sink = Sink()
    await run([tts(), sink], [InterruptionFrame(), TTSSpeakFrame("After."), EndFrame()])
    assert isinstance(sink.frames[0], InterruptionFrame)
    assert len(utterances(sink.frames)) == 1


# ---------------------------------------------------------------- settings


async def test_settings_apply_from_the_next_utterance(tts: TTSFactory) -> None:
    frames: list[Frame] = [
        LLMFullResponseStartFrame(),
        TextFrame("First part "),
        TTSUpdateSettingsFrame(voice_id=OTHER_VOICE, language=Language.FR),
        TextFrame("still first."),
        LLMFullResponseEndFrame(),
        TTSSpeakFrame("Second."),
        TTSUpdateSettingsFrame(language="de-AT"),
        TTSSpeakFrame("Third."),
        EndFrame(),
    ]
    sink = Sink()
    await run([tts(), sink], frames)
    assert len(utterances(sink.frames)) == 3
    first, second, third = (tts.settings_for(t) for t in ("still first.", "Second.", "Third."))
    assert first["voice"]["id"] == DEFAULT_VOICE_ID and "language" not in first
    assert second["voice"]["id"] == OTHER_VOICE and second["language"] == "fr"
    assert third["voice"]["id"] == OTHER_VOICE and third["language"] == "de"
    if tts.kind == "websocket":
        assert len(tts.server.log.connections) == 3  # a new connection per change, on purpose
    assert not sink.of(TTSUpdateSettingsFrame)  # consumed


async def test_an_invalid_settings_change_is_an_error_frame(tts: TTSFactory) -> None:
    sink = Sink()
    frames: list[Frame] = [TTSUpdateSettingsFrame(voice_id="  "), TTSSpeakFrame("Still fine."), EndFrame()]
    await run([tts(), sink], frames)
    (error,) = sink.of(ErrorFrame)
    assert isinstance(error.error, ConfigurationError) and not error.fatal
    assert len(utterances(sink.frames)) == 1


async def test_speed_and_stability_reach_the_wire(tts: TTSFactory) -> None:
    frames: list[Frame] = [
        TTSSpeakFrame("At the stage's speed."),
        TTSUpdateSettingsFrame(speed_control=2.0, stability=20),
        TTSSpeakFrame("Faster and steadier."),
        TTSUpdateSettingsFrame(speed_control=9.0),  # out of range: an ErrorFrame, nothing changes
        TTSSpeakFrame("Still the same."),
        EndFrame(),
    ]
    sink = Sink()
    await run([tts(speed_control=1.25, model="async_flash_v1.0"), sink], frames)
    first, second, third = (
        tts.settings_for(t) for t in ("At the stage's speed.", "Faster and steadier.", "Still the same.")
    )
    assert first["speed_control"] == 1.25 and "stability" not in first
    assert (second["speed_control"], second["stability"]) == (2.0, 20)
    assert (third["speed_control"], third["stability"]) == (2.0, 20)
    (error,) = sink.of(ErrorFrame)
    assert isinstance(error.error, ConfigurationError) and "speed_control" in str(error.error)
    assert len(utterances(sink.frames)) == 3


def test_a_stage_checks_its_voice_controls() -> None:
    with pytest.raises(ConfigurationError, match="stability"):
        WebSocketTTS(voice_id=DEFAULT_VOICE_ID, stability=101)
    with pytest.raises(ConfigurationError, match="speed_control"):
        HttpTTS(voice_id=DEFAULT_VOICE_ID, speed_control=0.5)


async def test_the_sample_rate_comes_from_the_params_unless_the_stage_sets_its_own(
    tts: TTSFactory,
) -> None:
    sink = Sink()
    params = PipelineParams(sample_rate=16000)
    await run([tts(), sink], [TTSSpeakFrame("From the params."), EndFrame()], params)
    await run([tts(sample_rate=22050), sink], [TTSSpeakFrame("From the stage."), EndFrame()], params)
    rates = {f.sample_rate for f in sink.of(TTSAudioRawFrame)}
    assert rates == {16000, 22050}
    assert tts.settings_for("From the params.")["output_format"]["sample_rate"] == 16000
    assert tts.settings_for("From the stage.")["output_format"]["sample_rate"] == 22050


# ------------------------------------------------------------------ errors


async def test_a_bad_voice_is_an_error_frame_and_the_pipeline_goes_on(tts: TTSFactory) -> None:
    sink = Sink()
    frames: list[Frame] = [
        TTSSpeakFrame("Anyone there?"),
        TTSUpdateSettingsFrame(voice_id=DEFAULT_VOICE_ID),
        TTSSpeakFrame("Yes."),
        EndFrame(),
    ]
    await run([tts(voice_id="no-such-voice"), sink], frames)
    errors = sink.of(ErrorFrame)
    assert errors and all(isinstance(e.error, NotFoundError) and not e.fatal for e in errors)
    assert errors[0].error.code == "VOICE_NOT_FOUND"
    spoken = utterances(sink.frames)
    assert len(spoken) == 1
    assert sink.frames.index(errors[-1]) < sink.frames.index(TTSStartedFrame(spoken[0].utterance_id))
    assert isinstance(sink.frames[-1], EndFrame)


@pytest.mark.parametrize("kind", ["websocket", "http"])
async def test_a_refused_key_is_fatal(kind: str) -> None:
    secret = "sk_wrong_secret_789"
    sink = Sink()
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal", api_key="sk_right", idle_timeout=None) as server:
            stage = TTSFactory(kind, server)(api_key=secret)
            await run([stage, sink], [TTSSpeakFrame("Hello?"), TTSSpeakFrame("Hello??"), EndFrame()])
    errors = sink.of(ErrorFrame)
    assert len(errors) >= 2  # one per utterance at least: never silence
    assert all(isinstance(e.error, AuthenticationError) and e.fatal for e in errors)
    assert not sink.of(TTSAudioRawFrame)
    assert isinstance(sink.frames[-1], EndFrame)
    assert all(secret not in repr(e) + e.message for e in errors)


@pytest.mark.parametrize("kind", ["websocket", "http"])
async def test_the_stage_keeps_its_key_masked_and_still_sends_it(kind: str) -> None:
    secret = "sk_right_secret_456"
    sink = Sink()
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal", api_key=secret, idle_timeout=None) as server:
            stage = TTSFactory(kind, server)(api_key=secret)
            # Nothing the stage shows of itself holds the key: not its repr, not its attributes.
            assert secret not in repr(stage)
            assert secret not in repr(vars(stage))
            assert not hasattr(stage, "api_key")
            await run([stage, sink], [TTSSpeakFrame("Hello."), EndFrame()])
    # The key still reached the server, which accepted it.
    assert not sink.of(ErrorFrame)
    assert sink.of(TTSAudioRawFrame)
    assert secret not in repr(vars(stage))


def test_a_bad_key_is_refused_when_the_stage_is_made() -> None:
    with pytest.raises(ConfigurationError, match="whitespace"):
        WebSocketTTS(api_key="sk bad", voice_id=DEFAULT_VOICE_ID)
    with pytest.raises(ConfigurationError, match="must be a str"):
        HttpTTS(api_key=123, voice_id=DEFAULT_VOICE_ID)  # type: ignore[arg-type]


async def test_a_stage_without_a_key_reads_the_environment_when_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "sk_env_secret_123"
    sink = Sink()
    monkeypatch.delenv("ASYNCAI_API_KEY", raising=False)
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal", api_key=secret, idle_timeout=None) as server:
            stage = WebSocketTTS(base_url=server.url, voice_id=DEFAULT_VOICE_ID)
            monkeypatch.setenv("ASYNCAI_API_KEY", secret)  # after the stage was made
            await run([stage, sink], [TTSSpeakFrame("Hello."), EndFrame()])
    assert not sink.of(ErrorFrame)
    assert sink.of(TTSAudioRawFrame)


async def test_a_server_error_fails_one_utterance_only(tts: TTSFactory) -> None:
    if tts.kind == "websocket":
        tts.server.faults.error_on_text = "RATE_LIMIT_EXCEEDED"
        stage = tts()
    else:
        tts.server.faults.http_statuses = [400]
        stage = tts()
    sink = Sink()
    await run([stage, sink], [TTSSpeakFrame("Too fast."), TTSSpeakFrame("Slower now."), EndFrame()])
    (error,) = sink.of(ErrorFrame)
    assert isinstance(error.error, trio_asyncai.APIError) and not error.fatal
    assert len(utterances(sink.frames)) == 1
    assert sink.frames.index(error) < sink.frames.index(sink.of(TTSStartedFrame)[0])


async def test_an_unreachable_service_is_reported_and_retried() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_local_server(engine="signal") as server:
            url = server.url  # closed when the block ends
    sink = Sink()
    stage = WebSocketTTS(base_url=url, voice_id=DEFAULT_VOICE_ID, max_reconnect_attempts=0)
    await run([stage, sink], [TTSSpeakFrame("Anyone?"), Marker("kept"), EndFrame()])
    errors = sink.of(ErrorFrame)
    # For the utterance (the connection tried at the start stays quiet: its
    # failure is the utterance's to report, when there is one).
    assert len(errors) == 1
    assert all(isinstance(e.error, ConnectError) and not e.fatal for e in errors)
    assert sink.of(Marker) == [Marker("kept")]


# ----------------------------------------------------------------- metrics


async def test_metrics_per_utterance_when_enabled(tts: TTSFactory) -> None:
    texts = ["Hello there.", "A somewhat longer second utterance."]
    sink = Sink()
    params = PipelineParams(enable_metrics=True)
    await run([tts(), sink], [*(TTSSpeakFrame(t) for t in texts), EndFrame()], params)
    spoken = utterances(sink.frames)
    metrics = sink.of(MetricsFrame)
    assert [m.utterance_id for m in metrics] == [s.utterance_id for s in spoken]
    for m, text in zip(metrics, texts, strict=True):
        assert sink.frames.index(m) > sink.frames.index(TTSStoppedFrame(m.utterance_id))
        assert m.characters == len(text)
        assert m.ttfb is not None and m.processing_time is not None
        assert 0 <= m.ttfb <= m.processing_time

    sink = Sink()
    await run([tts(), sink], [TTSSpeakFrame("No metrics."), EndFrame()])
    assert not sink.of(MetricsFrame)


# ---------------------------------------------------- the stage on its own


async def test_the_stage_returns_when_its_input_ends(tts: TTSFactory) -> None:
    stage = tts()
    in_send, in_receive = trio.open_memory_channel[Frame](10)
    out_send, out_receive = trio.open_memory_channel[Frame](1000)
    await in_send.send(TTSSpeakFrame("Without an EndFrame."))
    in_send.close()
    with trio.fail_after(TIMEOUT):
        await stage(in_receive, out_send)
    out_send.close()
    frames = [f async for f in out_receive]
    assert len(utterances(frames)) == 1
    assert not any(isinstance(f, EndFrame) for f in frames)


async def test_no_task_outlives_the_run(tts: TTSFactory) -> None:
    seen: list[list[str]] = []

    async def on_frame(frame: Frame) -> None:
        if isinstance(frame, TTSStoppedFrame):
            seen.append(tasks_named("trio_asyncai._"))

    await run([tts(), Sink(on_frame)], [TTSSpeakFrame("Count my tasks."), EndFrame()])
    assert any("_tts_engine" in name for name in seen[0])
    assert tasks_named("trio_asyncai._") == []  # the server's tasks are trio_asyncai.server.*
    assert tasks_named("stage ") == []


# ---------------------------------------------------- pipeline mechanics


async def forward(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
    """The simplest stage: passes every frame on."""
    async for frame in receive:
        await send.send(frame)
        if isinstance(frame, EndFrame):
            return


async def test_params_reach_stages_through_the_context() -> None:
    seen: list[PipelineParams] = []

    async def look(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
        seen.append(current_params())
        await forward(receive, send)

    params = PipelineParams(sample_rate=16000, enable_metrics=True)
    await run([look, Pipeline([look, forward])], [EndFrame()], params)
    assert seen == [params, params]
    assert current_params() == PipelineParams()


async def test_a_stage_error_comes_out_as_itself() -> None:
    async def broken(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
        await receive.receive()
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await run([forward, broken, forward], [Marker("x"), EndFrame()])


async def test_frames_flow_in_order_through_nested_pipelines() -> None:
    frames: list[Frame] = [Marker(str(i)) for i in range(50)]
    sink = Sink()
    await run([forward, Pipeline([forward, Pipeline([forward])]), sink], [*frames, EndFrame()])
    assert sink.frames == [*frames, EndFrame()]


async def test_a_stage_that_returns_early_ends_the_ones_after_it() -> None:
    async def first_only(
        receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        await send.send(await receive.receive())

    sink = Sink()
    task = PipelineTask(Pipeline([first_only, forward, sink]))
    await task.queue_frames([Marker("1")])
    with trio.fail_after(TIMEOUT):
        await task.run()
    assert sink.frames == [Marker("1")]


async def test_queueing_after_the_end_is_refused_and_a_task_runs_once() -> None:
    task = PipelineTask(Pipeline([forward]))
    await task.queue_frames([Marker("a"), EndFrame()])
    with pytest.raises(trio.ClosedResourceError):
        await task.queue_frame(Marker("late"))
    with trio.fail_after(TIMEOUT):
        await task.run()
    assert task.finished
    with pytest.raises(RuntimeError):
        await task.run()


async def test_cancel_stops_a_pipeline_that_would_run_forever() -> None:
    task = PipelineTask(Pipeline([forward, forward]))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task.run)
            await trio.testing.wait_all_tasks_blocked()
            running = not task.finished
            task.cancel()
    assert running and task.finished
    assert tasks_named("stage ") == []

    early = PipelineTask(Pipeline([forward]))
    early.cancel()
    with trio.fail_after(TIMEOUT):
        await early.run()


def test_bad_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        Pipeline([])
    with pytest.raises(ConfigurationError):
        Pipeline([42])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError):
        PipelineParams(sample_rate=1000)
    with pytest.raises(ConfigurationError):
        PipelineParams(enable_metrics="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        WebSocketTTS(voice_id="v", aggregate="word")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        HttpTTS(voice_id="v", sample_rate=96000)
    with pytest.raises(ConfigurationError):
        PipelineTask("not a pipeline")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_message"):
        WebSocketTTS(voice_id="v", max_message=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="keepalive_interval"):
        HttpTTS(voice_id="v", keepalive_interval=1.0)  # type: ignore[call-arg]


def test_pipecat_names_are_aliases() -> None:
    assert trio_asyncai.AsyncAITTSService is WebSocketTTS
    assert trio_asyncai.AsyncAIHttpTTSService is HttpTTS
    assert "voice='v'" in repr(WebSocketTTS(voice_id="v"))


def test_frames_are_immutable_values() -> None:
    frame = TTSAudioRawFrame(b"\x00\x00" * 240, 24000)
    assert frame.duration == 0.01
    assert "480 bytes" in repr(frame)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        frame.sample_rate = 16000  # type: ignore[misc]
    assert TextFrame("a") == TextFrame("a")
    frames: list[Frame] = [TextFrame("a"), TTSSpeakFrame("a")]
    assert frames[0] != frames[1]
    assert ErrorFrame(ValueError("boom")).message == "boom"
    assert isinstance(InterruptionFrame(), SystemFrame)


async def test_a_sink_that_returns_early_ends_the_pipeline_quietly(tts: TTSFactory) -> None:
    heard: list[Frame] = []

    async def first_audio_only(
        receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        async for frame in receive:
            heard.append(frame)
            if isinstance(frame, TTSAudioRawFrame):
                return  # heard enough: the stages before this one end too

    task = PipelineTask(Pipeline([ScriptedLLM(), tts(), first_audio_only]))
    await task.queue_frames([Prompt(LONG), Prompt(LONG)])  # no EndFrame: the sink ends it
    with trio.fail_after(TIMEOUT):
        await task.run()
    assert isinstance(heard[-1], TTSAudioRawFrame)
    assert task.finished
    await tts.all_closed()


# ------------------------------------------------- ends that must not hang


async def test_a_system_frame_after_the_sink_returned_ends_the_run(
    tts: TTSFactory, jump_clock: trio.testing.MockClock
) -> None:
    async def gone(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
        return  # heard enough before anything came

    task = PipelineTask(Pipeline([tts(), gone]))
    # The TTS stage finds the next stage gone as it forwards the system frame.
    await task.queue_frames([Urgent("late"), Marker("never read")])
    with trio.fail_after(TIMEOUT):
        await task.run()
    assert task.finished
    assert tasks_named("trio_asyncai._") == []


@pytest.mark.parametrize("early", [0, 1])
async def test_a_pipeline_called_directly_ends_when_a_stage_returns_early(
    early: int, jump_clock: trio.testing.MockClock
) -> None:
    async def first_only(
        receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        await send.send(await receive.receive())

    # Early first: the stage after it must see its input end. Early last:
    # the stage before it must find its output broken, and end.
    stages: list[Any] = [forward, forward]
    stages[early] = first_only
    in_send, in_receive = trio.open_memory_channel[Frame](10)
    out_send, out_receive = trio.open_memory_channel[Frame](10)
    await in_send.send(Marker("1"))
    await in_send.send(Marker("2"))  # the input stays open: only the early return ends the run
    with trio.fail_after(TIMEOUT):
        await Pipeline(stages)(in_receive, out_send)
    assert out_receive.receive_nowait() == Marker("1")
    with pytest.raises(trio.WouldBlock):
        out_receive.receive_nowait()


async def _say_nothing(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


async def _refuse_the_handshake(stream: trio.SocketStream) -> None:
    await stream.receive_some()
    await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
async def silent_peer() -> AsyncIterator[Peer]:
    """A service that accepts connections and never says a word (it hangs)."""
    async with tcp_peer(_say_nothing) as peer:
        yield peer


@pytest.fixture
async def refusing_peer() -> AsyncIterator[Peer]:
    """A service that refuses every WebSocket handshake at once with a 503."""
    async with tcp_peer(_refuse_the_handshake) as peer:
        yield peer


async def test_the_warm_up_ends_with_the_stage(jump_clock: trio.testing.MockClock, silent_peer: Peer) -> None:
    sink = Sink()
    # A connect that could take minutes: the stage, given nothing to say,
    # must not wait for it (run() is bounded by TIMEOUT).
    stage = WebSocketTTS(base_url=silent_peer.url, voice_id=DEFAULT_VOICE_ID, connect_timeout=TIMEOUT * 10)
    await run([stage, sink], [EndFrame()])
    assert sink.frames == [EndFrame()]
    assert silent_peer.accepted <= 1  # the warm-up's first attempt, cancelled


async def test_an_utterance_takes_the_warm_ups_failure(
    jump_clock: trio.testing.MockClock, silent_peer: Peer
) -> None:
    alone = Sink()
    stage = WebSocketTTS(base_url=silent_peer.url, voice_id=DEFAULT_VOICE_ID)
    # What one connect costs on its own (its attempts): a synthesizer opened with the same options.
    with pytest.raises(trio_asyncai.TransportError), trio.fail_after(TIMEOUT * 10):
        async with trio_asyncai.open_synthesizer(base_url=silent_peer.url, voice_id=DEFAULT_VOICE_ID):
            pass  # pragma: no cover
    one_connect = silent_peer.accepted
    silent_peer.accepted = 0
    task = PipelineTask(Pipeline([stage, alone]))
    await task.queue_frames([TTSSpeakFrame("Anyone?"), EndFrame()])
    with trio.fail_after(TIMEOUT * 10):
        await task.run()
    (error,) = alone.of(ErrorFrame)
    assert isinstance(error.error, trio_asyncai.TransportError) and not error.fatal
    # The utterance waited for the warm-up's connect and reported its
    # failure, instead of connecting again from scratch.
    assert silent_peer.accepted == one_connect


async def test_an_utterance_after_the_warm_up_failed_takes_its_failure(
    jump_clock: trio.testing.MockClock, refusing_peer: Peer
) -> None:
    sink = Sink()
    stage = WebSocketTTS(base_url=refusing_peer.url, voice_id=DEFAULT_VOICE_ID, max_reconnect_attempts=0)
    task = PipelineTask(Pipeline([stage, sink]))
    with trio.fail_after(TIMEOUT * 10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task.run)
            while refusing_peer.accepted < 1:
                await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()  # the warm-up has failed by now
            await task.queue_frames([TTSSpeakFrame("Anyone?")])
            while not sink.of(ErrorFrame):
                await trio.testing.wait_all_tasks_blocked()
            # The first utterance reported the warm-up's failure without connecting again.
            assert refusing_peer.accepted == 1
            await task.queue_frames([TTSSpeakFrame("Still nobody?"), EndFrame()])
    errors = sink.of(ErrorFrame)
    assert [(type(e.error), getattr(e.error, "status", None)) for e in errors] == [
        (trio_asyncai.ServerError, 503)
    ] * 2
    assert refusing_peer.accepted == 2  # the next utterance tried anew


@pytest.mark.parametrize(
    ("stage", "options", "opener"),
    [
        (WebSocketTTS, WebSocketOptions, trio_asyncai.open_synthesizer),
        (HttpTTS, HttpOptions, trio_asyncai.open_http_synthesizer),
    ],
)
def test_the_stages_take_their_synthesizers_options(stage: Any, options: Any, opener: Any) -> None:
    # One list of options: the stage's are its synthesizer's (the output
    # format aside: the pipeline sets the sample rate once), with its own.
    own = set(attrs.fields_dict(StageOwnOptions))
    synthesizer = attrs.fields_dict(options)
    stage_fields = attrs.fields_dict(stage)
    assert set(stage_fields) - own == set(synthesizer) - {"output_format", "sample_rate"}
    for name in set(stage_fields) - own:
        assert stage_fields[name].type == synthesizer[name].type, name
        assert stage_fields[name].default == synthesizer[name].default, name
    # The factory's signature is its options'.
    assert list(inspect.signature(opener).parameters) == [field.alias for field in attrs.fields(options)]
    for name, field in synthesizer.items():
        assert f":param {field.alias}:" in (opener.__doc__ or "")
        assert f":param {field.alias}:" in (stage.__doc__ or "") or name not in stage_fields


@pytest.mark.parametrize("ending", ["end", "interrupt"])
async def test_a_next_stage_gone_while_the_generation_ends_ends_the_stage(
    tts: TTSFactory, ending: str
) -> None:
    """The sink returns at the first audio while an EndFrame (or a barge-in) already ends the generation."""

    async def first_audio_only(
        receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        async for frame in receive:
            if isinstance(frame, TTSAudioRawFrame):
                return

    response: list[Frame] = [
        LLMFullResponseStartFrame(),
        TextFrame("One sentence here."),
        LLMFullResponseEndFrame(),
    ]
    last: list[Frame] = [EndFrame()] if ending == "end" else [InterruptionFrame(), EndFrame()]
    task = PipelineTask(Pipeline([tts(), first_audio_only]))
    await task.queue_frames([*response, *response, *last])
    with trio.fail_after(TIMEOUT):
        await task.run()  # returns: no job waits for a turn that never comes


async def test_a_settings_frame_of_your_own_is_still_a_settings_frame(tts: TTSFactory) -> None:
    @attrs.frozen
    class TaggedSettings(TTSUpdateSettingsFrame):
        tag: str = "mine"

    other = PREDEFINED_VOICES[1].voice_id
    sink = Sink()
    await run([tts(), sink], [TaggedSettings(voice_id=other), TTSSpeakFrame("Tagged."), EndFrame()])
    assert not sink.of(ErrorFrame)
    assert tts.settings_for("Tagged.")["voice"]["id"] == other


@pytest.mark.parametrize("holder", [WebSocketTTS, HttpTTS, WebSocketOptions, HttpOptions])
def test_no_copy_of_a_stage_or_its_options_shows_the_key(holder: Any) -> None:
    secret = "sk_asdict_secret_789"
    made = holder(api_key=secret, voice_id=DEFAULT_VOICE_ID)
    for shown in (repr(made), repr(vars(made)), repr(attrs.asdict(made)), repr(attrs.astuple(made))):
        assert secret not in shown


@pytest.mark.parametrize(
    "opener", [trio_asyncai.open_synthesizer, trio_asyncai.open_http_synthesizer, trio_asyncai.open_client]
)
def test_the_docs_show_the_factories_as_async_with(opener: Any) -> None:
    # What sphinxcontrib-trio follows to render "async with": the __wrapped__
    # chain down to an async generator made into a context manager.
    manager = opener.__wrapped__
    assert inspect.isasyncgenfunction(manager.__wrapped__)
    assert manager.__code__ is contextlib.asynccontextmanager(manager.__wrapped__).__code__
