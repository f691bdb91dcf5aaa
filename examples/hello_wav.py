"""Speak one sentence into hello.wav with the local server: no API key needed."""

import wave

import trio

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server

SAMPLE_RATE = 24000


async def main() -> None:
    async with (
        open_local_server() as server,
        trio_asyncai.open_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, sample_rate=SAMPLE_RATE
        ) as synth,
    ):
        with wave.open("hello.wav", "wb") as wav:
            wav.setnchannels(1)  # the service's audio is mono,
            wav.setsampwidth(2)  # raw pcm_s16le: 2 bytes a sample
            wav.setframerate(SAMPLE_RATE)
            async with synth.speak("Hello from trio.") as utterance:
                async for chunk in utterance:
                    wav.writeframes(chunk.audio)
        print(f"time to first audio: {utterance.metrics.ttfb:.3f} s")


trio.run(main)
