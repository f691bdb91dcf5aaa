"""The same SDK from anyio code: run it on anyio's trio backend."""

import anyio

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server


async def main() -> None:
    async with (
        open_local_server() as server,
        trio_asyncai.open_synthesizer(base_url=server.url, voice_id=DEFAULT_VOICE_ID) as synth,
        synth.speak("Hello from anyio.") as utterance,
    ):
        audio = await utterance.read_all()
    print(f"{len(audio)} bytes at {utterance.output_format.sample_rate} Hz")


anyio.run(main, backend="trio")
