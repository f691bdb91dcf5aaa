"""The Language enum: the service's language codes, regional tags, and use as ``language=``."""

from __future__ import annotations

import pytest
import trio
from helpers import TIMEOUT

from trio_asyncai import (
    APIError,
    ConfigurationError,
    Language,
    Settings,
    open_http_synthesizer,
    open_synthesizer,
)
from trio_asyncai.server import DEFAULT_VOICE_ID, SUPPORTED_LANGUAGES, LocalServer

#: The 15 TTS languages of the reference, in its order.
CODES = ["en", "fr", "es", "de", "it", "pt", "ar", "ru", "ro", "ja", "he", "hy", "tr", "hi", "zh"]


def test_every_service_language_has_a_member() -> None:
    assert [member.value for member in Language] == CODES
    assert {member.value for member in Language} == set(SUPPORTED_LANGUAGES)
    for code in CODES:
        assert Language[code.upper()].value == code


def test_dutch_is_no_tts_language() -> None:
    assert "NL" not in Language.__members__
    with pytest.raises(ConfigurationError, match="does not speak 'nl-BE'"):
        Language.from_tag("nl-BE")
    # A plain code is the service's to judge, as model ids are.
    assert Settings(voice_id="v", language="nl-NL").request_body()["language"] == "nl"


async def test_a_plain_nl_reaches_the_service_which_refuses_it(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_synthesizer(base_url=server.url, voice_id=DEFAULT_VOICE_ID, language="nl") as synth:
            with pytest.raises(APIError) as ws_error:
                async with synth.speak("Hallo.") as utterance:
                    await utterance.read_all()
        async with open_http_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, language="nl"
        ) as http:
            with pytest.raises(APIError) as http_error:
                async with http.speak("Hallo.") as utterance:
                    await utterance.read_all()
    assert ws_error.value.code == http_error.value.code == "INVALID_LANGUAGE"
    assert server.log.connections[0].messages[0]["language"] == "nl"


def test_members_are_their_codes() -> None:
    code: str = Language.FR  # a str, usable wherever a code is
    assert code == "fr"
    assert str(Language.FR) == "fr"
    assert f"{Language.HY}" == "hy"
    assert Language("de") is Language.DE


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en", Language.EN),
        ("EN", Language.EN),
        ("en-US", Language.EN),
        ("en_GB", Language.EN),
        ("pt-BR", Language.PT),
        ("zh-Hant-TW", Language.ZH),
        (" fr-CA ", Language.FR),
        (Language.JA, Language.JA),
    ],
)
def test_from_tag_falls_back_to_the_base_language(tag: str, expected: Language) -> None:
    assert Language.from_tag(tag) is expected


@pytest.mark.parametrize("tag", ["xx", "klingon", "", "-US", "e"])
def test_unknown_languages_are_refused(tag: str) -> None:
    with pytest.raises(ConfigurationError, match="does not speak"):
        Language.from_tag(tag)
    with pytest.raises(ValueError):  # ConfigurationError is a ValueError too
        Language.from_tag(tag)


def test_from_tag_wants_a_string() -> None:
    with pytest.raises(ConfigurationError):
        Language.from_tag(42)  # type: ignore[arg-type]


def test_settings_take_a_member() -> None:
    assert Settings(voice_id="v", language=Language.HE).language == "he"
    assert Settings(voice_id="v").with_changes(language=Language.from_tag("ar-EG")).language == "ar"


async def test_synthesizers_take_a_member(server: LocalServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, language=Language.ES
        ) as synth:
            async with synth.speak("Hola.") as utterance:
                assert await utterance.read_all()
        async with open_http_synthesizer(
            base_url=server.url, voice_id=DEFAULT_VOICE_ID, language=Language.IT
        ) as http:
            async with http.speak("Ciao.") as utterance:
                assert await utterance.read_all()
    assert server.log.connections[0].messages[0]["language"] == "es"
    assert server.log.http[0].body["language"] == "it"
