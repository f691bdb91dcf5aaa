"""Whole files, word timestamps and voices, over the HTTP API."""

import io
import wave

import trio

import trio_asyncai
from trio_asyncai import OutputFormat
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server


async def main() -> None:
    async with (
        open_local_server() as server,
        trio_asyncai.open_client(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as client,
    ):
        # Every voice, page after page.
        async for voice in client.voices.list(page_size=2):
            print(f"{voice.voice_id}  {voice.name} ({voice.voice_type})")

        # A whole WAV file in one answer.
        wav_bytes = await client.synthesize(
            "A whole file at once.", output_format=OutputFormat(container="wav", sample_rate=24000)
        )
        with wave.open(io.BytesIO(wav_bytes)) as wav:
            print(f"whole file: {wav.getnframes() / wav.getframerate():.2f} s")

        # Audio with the time of every word.
        result = await client.synthesize_with_timestamps("Every word gets a time.")
        for word in result.words:
            print(f"{word.start:6.2f}-{word.end:5.2f} s  {word.word}")

        # A voice of your own from a recording (here: the local server's preview).
        sample = await client.voices.preview(DEFAULT_VOICE_ID)
        mine = await client.voices.clone(sample, name="My voice")
        print(f"cloned: {mine.voice_id} ({mine.voice_type})")
        async with trio_asyncai.open_synthesizer(base_url=server.url, voice_id=mine.voice_id) as synth:
            async with synth.speak("This is my own voice.") as utterance:
                print(f"spoke {len(await utterance.read_all())} bytes in it")
        await client.voices.delete(mine.voice_id)


trio.run(main)
