"""Stop an utterance mid-sentence (a barge-in), then carry on speaking."""

import trio

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server

LONG_TEXT = (
    "This is a long answer that the user will not wait for. It goes on and on, "
    "about the weather, the trains, and the many virtues of structured concurrency."
)


async def main() -> None:
    async with (
        open_local_server() as server,
        trio_asyncai.open_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, sample_rate=24000
        ) as synth,
    ):
        heard = 0.0
        async with synth.speak(LONG_TEXT) as utterance:
            async for chunk in utterance:
                heard += chunk.duration
                if heard >= 0.5:  # the user started talking
                    utterance.interrupt()  # sync: not one more chunk of it arrives
        # interrupt() cancelled the block: we are here, right after it.
        print(f"interrupted={utterance.interrupted} after {heard:.2f} s")

        async with synth.speak("Sorry, go ahead.") as reply:
            audio = await reply.read_all()  # only the reply's own audio
        print(f"reply: {len(audio)} bytes")


trio.run(main)
