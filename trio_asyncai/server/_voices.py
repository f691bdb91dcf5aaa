"""The local server's voices: the API's voice objects plus how to render them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal, final

import attrs

from ._languages import LANGUAGE_CODES

__all__ = [
    "DEFAULT_VOICE_ID",
    "PREDEFINED_VOICES",
    "LibraryVoice",
    "VoiceLibrary",
    "VoiceParams",
]

VoiceType = Literal["PREDEFINED", "CUSTOM"]


@final
@attrs.frozen
class VoiceParams:
    """How an engine renders a voice. Not part of the API's voice object.

    ``length_scale``, ``noise_scale`` and ``noise_w_scale`` go to piper's
    ``SynthesisConfig`` (``None`` = the model's own value). ``pitch`` is a
    playback-rate factor applied by the server to any engine's output: above
    1 the voice is higher and a little faster, below 1 lower and slower.
    ``volume`` scales the samples. ``speed`` is the speaking rate a request
    asks for (its ``speed_control``): the engines divide their phoneme or
    character length by it, so 2.0 speaks in about half the time, at the
    same pitch. ``stability`` (0-100, ``None`` = not asked for) is the
    request's ``stability``: piper scales its noise by it (see
    :class:`~trio_asyncai.server.PiperEngine`), from half as much variation
    at 100 to half as much again at 0; the signal engine has none to scale.
    ``language`` is the language to speak (one of the 15 codes): the
    request's, or the one the server chose for its text; ``None`` lets the
    server choose by the text's script (see ``_languages``).
    """

    length_scale: float | None = None
    noise_scale: float | None = None
    noise_w_scale: float | None = None
    pitch: float = 1.0
    volume: float = 0.9
    speed: float = 1.0
    stability: int | None = None
    language: str | None = None


@final
@attrs.frozen
class LibraryVoice:
    """A voice of the server's library: as the Async API describes it, plus the engine settings behind it.

    :meth:`to_json` gives the API's voice object (``voice_id``, ``name``, ...,
    ``voice_type``); ``params`` is the server's own business.
    """

    voice_id: str
    name: str
    description: str | None
    language: str
    gender: str | None
    accent: str | None
    style: str | None
    created_at: str
    updated_at: str
    voice_type: VoiceType = "PREDEFINED"
    params: VoiceParams = attrs.field(factory=VoiceParams, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The voice object as the API returns it."""
        return {
            "voice_id": self.voice_id,
            "name": self.name,
            "description": self.description,
            "language": self.language,
            "gender": self.gender,
            "accent": self.accent,
            "style": self.style,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "voice_type": self.voice_type,
        }


_CREATED: Final = "2025-01-01T00:00:00Z"

#: The id of the default voice: piper's "joe" (US English, male). The ids are
#: UUIDv5 values of fixed names, so they never change between releases.
DEFAULT_VOICE_ID: Final = "8c073dae-43c8-5e05-821f-02afb21cf2ec"

#: What the predefined voices speak: every TTS language, comma separated (the
#: one piper model reads each in that language, with its American accent).
_EVERY_LANGUAGE: Final = ",".join(LANGUAGE_CODES)

#: The voices every local server knows: one piper model, rendered three ways.
PREDEFINED_VOICES: Final[tuple[LibraryVoice, ...]] = (
    LibraryVoice(
        voice_id=DEFAULT_VOICE_ID,
        name="Joe",
        description="A clear, neutral American male voice (piper 'joe'), in 15 languages with his accent.",
        language=_EVERY_LANGUAGE,
        gender="Male",
        accent="american",
        style="neutral",
        created_at=_CREATED,
        updated_at=_CREATED,
        params=VoiceParams(),
    ),
    LibraryVoice(
        voice_id="dfa20ed4-1bc0-58c8-9523-acf9e2b45fb9",
        name="Joe Calm",
        description="Joe, slower and a little lower: for narration.",
        language=_EVERY_LANGUAGE,
        gender="Male",
        accent="american",
        style="calm",
        created_at=_CREATED,
        updated_at=_CREATED,
        params=VoiceParams(length_scale=1.15, noise_scale=0.5, pitch=0.94),
    ),
    LibraryVoice(
        voice_id="f5100b6c-d513-537f-84c3-b2b57be6d606",
        name="Joe Bright",
        description="Joe, quicker and a little higher: for lively replies.",
        language=_EVERY_LANGUAGE,
        gender="Male",
        accent="american",
        style="energetic",
        created_at=_CREATED,
        updated_at=_CREATED,
        params=VoiceParams(length_scale=0.9, noise_scale=0.8, pitch=1.07),
    ),
)


@final
class VoiceLibrary:
    """The voices one server knows, by id, in a stable order.

    Starts with :data:`PREDEFINED_VOICES`; :meth:`add` and :meth:`remove` are
    there for custom (cloned) voices.
    """

    def __init__(self, voices: Iterable[LibraryVoice] = PREDEFINED_VOICES) -> None:
        self._voices: dict[str, LibraryVoice] = {v.voice_id: v for v in voices}

    def get(self, voice_id: str) -> LibraryVoice | None:
        """The voice with this id, or ``None``."""
        return self._voices.get(voice_id)

    def add(self, voice: LibraryVoice) -> None:
        """Add (or replace) a voice."""
        self._voices[voice.voice_id] = voice

    def remove(self, voice_id: str) -> LibraryVoice | None:
        """Forget a voice; return it, or ``None`` if it was not known."""
        return self._voices.pop(voice_id, None)

    def __iter__(self) -> Iterator[LibraryVoice]:
        return iter(list(self._voices.values()))

    def __len__(self) -> int:
        return len(self._voices)

    def __contains__(self, voice_id: object) -> bool:
        return voice_id in self._voices

    def __repr__(self) -> str:
        return f"<VoiceLibrary of {len(self._voices)} voices>"
