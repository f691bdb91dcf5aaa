"""The languages the Async service speaks, as an enum of its language codes."""

from __future__ import annotations

import enum
from typing import final

from ._errors import ConfigurationError
from ._types import normalize_language

__all__ = ["Language"]


@final
class Language(enum.StrEnum):
    """A language the Async service speaks; each member's value is the service's code.

    The 15 languages of text-to-speech: en fr es de it pt ar ru ro ja he hy
    tr hi zh. Not every model speaks all of them (``async_flash_v1.5``: en es
    fr de it pt; ``async_pro_v1.0``: en; ``async_flash_v1.0``: all 15).

    Pass one anywhere a language is taken: ``open_synthesizer(language=Language.FR)``,
    :class:`~trio_asyncai.frames.TTSUpdateSettingsFrame`, the TTS stages. Being a
    :class:`str` enum, ``Language.FR == "fr"`` and ``str(Language.FR) == "fr"``.

    :meth:`from_tag` reads a BCP 47 tag such as ``"en-US"`` or ``"pt_BR"``: a
    regional tag falls back to its base language, since the service takes the
    base code only.

    Dutch (``nl``) is no member: the service's voice list knows Dutch voices,
    but synthesis does not take ``nl``. ``Language.from_tag("nl")`` raises;
    a plain string such as ``language="nl"`` is passed to the service as it
    is (the client checks no language codes, as it checks no model ids), and
    the service refuses it with ``INVALID_LANGUAGE``.
    """

    #: English
    EN = "en"
    #: French
    FR = "fr"
    #: Spanish
    ES = "es"
    #: German
    DE = "de"
    #: Italian
    IT = "it"
    #: Portuguese
    PT = "pt"
    #: Arabic
    AR = "ar"
    #: Russian
    RU = "ru"
    #: Romanian
    RO = "ro"
    #: Japanese
    JA = "ja"
    #: Hebrew
    HE = "he"
    #: Armenian
    HY = "hy"
    #: Turkish
    TR = "tr"
    #: Hindi
    HI = "hi"
    #: Chinese
    ZH = "zh"

    @classmethod
    def from_tag(cls, tag: str | Language) -> Language:
        """The language of a code or tag: ``"fr"``, ``"FR"``, ``"en-US"``, ``"zh_Hant_TW"``.

        The region, script and any other subtags are dropped (``"en-GB"`` is
        :attr:`EN`). A language the service does not speak raises
        :exc:`~trio_asyncai.ConfigurationError` (a :exc:`ValueError`).
        """
        if isinstance(tag, Language):
            return tag
        if not isinstance(tag, str):
            raise ConfigurationError(f"a language tag must be a str, not {type(tag).__name__}")
        try:
            return cls(normalize_language(tag) or "")
        except ValueError:
            known = ", ".join(member.value for member in cls)
            raise ConfigurationError(f"the service does not speak {tag!r}; it speaks {known}") from None
