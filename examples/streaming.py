"""Stream text into an utterance as it is produced, and play audio as it comes."""

import trio

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server

TOKENS = ["Text ", "arrives ", "a few ", "words ", "at a time, ", "as an LLM ", "writes it. "]


async def feed(utterance: trio_asyncai.Utterance) -> None:
    for token in TOKENS:
        await utterance.send(token)
        await trio.sleep(0.05)  # an LLM thinking
    await utterance.finish("And then it ends.")  # the last text; flushes everything


async def main() -> None:
    async with (
        open_local_server() as server,
        trio_asyncai.open_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, sample_rate=24000
        ) as synth,
    ):
        async with synth.open_utterance() as utterance, trio.open_nursery() as nursery:
            nursery.start_soon(feed, utterance)
            seconds = 0.0
            async for chunk in utterance:  # ends when all the audio has arrived
                seconds += chunk.duration  # ... or hand chunk.audio to a player
        print(f"{seconds:.2f} s of audio, {utterance.metrics.characters} characters")


trio.run(main)
