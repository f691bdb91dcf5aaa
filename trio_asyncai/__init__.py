"""trio-asyncai: a trio-native SDK for the Async voice API (text-to-speech).

Speech over a persistent WebSocket::

    import trio
    import trio_asyncai

    async def main() -> None:
        async with trio_asyncai.open_synthesizer(voice_id="...") as synth:
            async with synth.speak("Hello from trio.") as utterance:
                async for chunk in utterance:
                    ...  # chunk.audio: raw pcm_s16le bytes

    trio.run(main)
"""

from ._aggregator import split_text as split_text
from ._client import AsyncAIClient as AsyncAIClient
from ._client import TimestampedAudio as TimestampedAudio
from ._client import Voice as Voice
from ._client import Voices as Voices
from ._client import WordTimestamp as WordTimestamp
from ._client import open_client as open_client
from ._config import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from ._errors import APIError as APIError
from ._errors import AsyncAIError as AsyncAIError
from ._errors import AuthenticationError as AuthenticationError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import ConnectError as ConnectError
from ._errors import ConnectionLostError as ConnectionLostError
from ._errors import ContextEndedError as ContextEndedError
from ._errors import InvalidRequestError as InvalidRequestError
from ._errors import NoAudioError as NoAudioError
from ._errors import NotFoundError as NotFoundError
from ._errors import PayloadTooLargeError as PayloadTooLargeError
from ._errors import ProtocolError as ProtocolError
from ._errors import ProtocolStateError as ProtocolStateError
from ._errors import QuotaExceededError as QuotaExceededError
from ._errors import RateLimitError as RateLimitError
from ._errors import ServerError as ServerError
from ._errors import SlowConsumerError as SlowConsumerError
from ._errors import SynthesisTimeout as SynthesisTimeout
from ._errors import SynthesizerClosedError as SynthesizerClosedError
from ._errors import TransportError as TransportError
from ._errors import VoiceCloneLimitError as VoiceCloneLimitError
from ._errors import is_fatal as is_fatal
from ._http import HttpSynthesizer as HttpSynthesizer
from ._http import HttpSynthesizerStatistics as HttpSynthesizerStatistics
from ._http import connect_http_synthesizer as connect_http_synthesizer
from ._http import open_http_synthesizer as open_http_synthesizer
from ._types import DEFAULT_MODEL as DEFAULT_MODEL
from ._types import DEFAULT_SAMPLE_RATE as DEFAULT_SAMPLE_RATE
from ._types import AudioChunk as AudioChunk
from ._types import OutputFormat as OutputFormat
from ._types import Settings as Settings
from ._types import SettingsChanges as SettingsChanges
from ._types import UtteranceMetrics as UtteranceMetrics
from ._utterance import Utterance as Utterance
from ._utterance import UtteranceState as UtteranceState
from ._version import __version__ as __version__
from ._websocket import Synthesizer as Synthesizer
from ._websocket import SynthesizerStatistics as SynthesizerStatistics
from ._websocket import connect_synthesizer as connect_synthesizer
from ._websocket import open_synthesizer as open_synthesizer

# isort: split
# Languages and pipelines, in a block of their own so that appends merge cleanly.
from ._language import Language as Language
from ._pipeline import Pipeline as Pipeline
from ._pipeline import PipelineParams as PipelineParams
from ._pipeline import PipelineTask as PipelineTask
from ._pipeline import Stage as Stage
from ._pipeline import current_params as current_params
from ._tts_stages import AsyncAIHttpTTSService as AsyncAIHttpTTSService
from ._tts_stages import AsyncAITTSService as AsyncAITTSService
from ._tts_stages import HttpTTS as HttpTTS
from ._tts_stages import WebSocketTTS as WebSocketTTS
