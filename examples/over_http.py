"""The same utterances over HTTP streaming requests instead of a WebSocket."""

import trio

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server


async def main() -> None:
    async with (
        open_local_server() as server,
        trio_asyncai.open_http_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, sample_rate=24000
        ) as synth,
    ):
        seconds = 0.0
        async with synth.speak("Hello over HTTP.") as utterance:
            async for chunk in utterance:  # streamed as the response body arrives
                seconds += chunk.duration
        print(f"{seconds:.2f} s of audio")


trio.run(main)
