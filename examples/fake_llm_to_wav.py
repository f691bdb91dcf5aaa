"""A fake LLM streams a reply, the TTS stage speaks it, a sink writes it to a WAV file.

Runs anywhere, with no key and no network: it starts a local Async-compatible
server in-process (with the offline voice if it is installed, a generated
signal otherwise). Against the real service, drop the local server and the
``base_url`` and ``voice_id`` arguments, and set ``ASYNCAI_API_KEY`` and
``ASYNCAI_VOICE_ID``.

    python examples/fake_llm_to_wav.py -o reply.wav
"""

from __future__ import annotations

import argparse
import re
import wave

import attrs
import trio

import trio_asyncai
from trio_asyncai.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    MetricsFrame,
    TextFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server

REPLY = (
    "Hello! I am a fake language model, and I write my answer a word at a time. "
    "The pipeline speaks each sentence as soon as it is complete. "
    "Dr. Smith's coffee cost $3.50 at 10.30 a.m., and that is still one sentence."
)


@attrs.frozen
class UserSaid(Frame):
    """A frame of our own: what the user said. Stages that do not know it pass it on."""

    text: str


async def fake_llm(receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]) -> None:
    """A stage that answers every UserSaid with REPLY, streamed token by token."""
    async for frame in receive:
        if isinstance(frame, UserSaid):
            await send.send(LLMFullResponseStartFrame())
            for token in re.findall(r"\s*\S+", REPLY):
                await send.send(TextFrame(token))
                await trio.sleep(0.02)  # thinking
            await send.send(LLMFullResponseEndFrame())
            continue
        await send.send(frame)  # everything else passes through, in order
        if isinstance(frame, EndFrame):
            return


class WavSink:
    """A stage that writes the audio it receives to a WAV file, and reports the rest."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seconds = 0.0

    async def __call__(
        self, receive: trio.MemoryReceiveChannel[Frame], send: trio.MemorySendChannel[Frame]
    ) -> None:
        # The pipeline's output sample rate, which the TTS stage uses too.
        sample_rate = trio_asyncai.current_params().sample_rate
        with wave.open(self.path, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)  # TTSAudioRawFrame audio is 16-bit PCM
            wav.setframerate(sample_rate)
            async for frame in receive:
                if isinstance(frame, TTSAudioRawFrame):
                    wav.writeframes(frame.audio)  # small local writes; a player would queue them
                    self.seconds += frame.duration
                elif isinstance(frame, TTSStartedFrame | TTSStoppedFrame):
                    print(f"{type(frame).__name__} {frame.utterance_id[:8]}")
                elif isinstance(frame, MetricsFrame):
                    print(
                        f"  ttfb {frame.ttfb or 0:.3f} s, processing {frame.processing_time or 0:.3f} s,"
                        f" {frame.characters} characters"
                    )
                elif isinstance(frame, ErrorFrame):
                    print(f"error{' (fatal)' if frame.fatal else ''}: {frame.message}")
                await send.send(frame)
                if isinstance(frame, EndFrame):
                    return


async def main(output: str) -> None:
    async with open_local_server() as server:
        tts = trio_asyncai.WebSocketTTS(base_url=server.url, voice_id=DEFAULT_VOICE_ID)
        sink = WavSink(output)
        pipeline = trio_asyncai.Pipeline([fake_llm, tts, sink])
        params = trio_asyncai.PipelineParams(sample_rate=24000, enable_metrics=True)
        task = trio_asyncai.PipelineTask(pipeline, params=params)
        await task.queue_frames([UserSaid("Say something."), EndFrame()])
        await task.run()  # returns once the EndFrame went through every stage
    print(f"wrote {sink.seconds:.2f} s of speech to {output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="reply.wav", help="the WAV file to write")
    trio.run(main, parser.parse_args().output)
