"""Telephony audio: 8 kHz G.711 mu-law, cut into the 20 ms frames a phone line carries."""

import base64
import json

import trio

import trio_asyncai
from trio_asyncai.server import DEFAULT_VOICE_ID, open_local_server

# One byte a sample: 20 ms at 8000 Hz is 160 bytes.
PHONE = trio_asyncai.OutputFormat(encoding="pcm_mulaw", sample_rate=8000)
FRAME_BYTES = 160


async def main() -> None:
    async with (
        open_local_server() as server,
        trio_asyncai.open_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, output_format=PHONE
        ) as synth,
    ):
        frames: list[str] = []
        pending = b""
        async with synth.speak("Thanks for calling. How can I help?") as utterance:
            async for chunk in utterance:
                pending += chunk.audio
                while len(pending) >= FRAME_BYTES:
                    frame, pending = pending[:FRAME_BYTES], pending[FRAME_BYTES:]
                    # What a media-stream WebSocket (Twilio's, say) takes for each frame.
                    frames.append(
                        json.dumps({"event": "media", "media": {"payload": base64.b64encode(frame).decode()}})
                    )
        seconds = utterance.metrics.audio_bytes / PHONE.sample_rate
        print(f"{len(frames)} frames of 20 ms ({seconds:.2f} s of mu-law audio), first: {frames[0][:60]}...")


trio.run(main)
