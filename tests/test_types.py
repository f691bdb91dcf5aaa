"""Value types: output formats, chunks, metrics, settings, and what the environment supplies."""

from __future__ import annotations

import enum
import typing
from typing import Any

import attrs
import pytest

from trio_asyncai import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    AudioChunk,
    ConfigurationError,
    OutputFormat,
    Settings,
    UtteranceMetrics,
)
from trio_asyncai._config import ApiKey, resolve_api_key, resolve_base_url, resolve_voice_id
from trio_asyncai._types import SettingsChanges, check_output_format, normalize_language
from trio_asyncai.frames import TTSUpdateSettingsFrame

# ------------------------------------------------------------- OutputFormat


def test_output_format_defaults_are_raw_s16_at_the_one_default_rate() -> None:
    fmt = OutputFormat()
    assert (fmt.container, fmt.encoding, fmt.sample_rate, fmt.bit_rate) == (
        "raw",
        "pcm_s16le",
        24000,
        None,
    )
    assert fmt.to_json() == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}


def test_sdk_pipeline_and_cli_share_one_default_sample_rate() -> None:
    from trio_asyncai import DEFAULT_SAMPLE_RATE, PipelineParams
    from trio_asyncai._cli import _build_parser

    speak = _build_parser().parse_args(["speak", "hi"])
    assert DEFAULT_SAMPLE_RATE == 24000
    assert OutputFormat().sample_rate == PipelineParams().sample_rate == speak.sample_rate == 24000


@pytest.mark.parametrize("container", ["raw", "wav", "mp3"])
@pytest.mark.parametrize(("encoding", "width"), [("pcm_s16le", 2), ("pcm_f32le", 4), ("pcm_mulaw", 1)])
def test_output_format_accepts_documented_values(container: Any, encoding: Any, width: int) -> None:
    fmt = OutputFormat(container=container, encoding=encoding, sample_rate=8000)
    assert fmt.to_json()["container"] == container
    assert fmt.to_json()["encoding"] == encoding
    assert fmt.sample_width == width


def test_mulaw_is_for_streaming_only_and_wav_for_whole_files() -> None:
    mulaw = OutputFormat(encoding="pcm_mulaw", sample_rate=8000)
    wav = OutputFormat(container="wav")
    assert check_output_format(mulaw, streaming=True) is mulaw
    assert check_output_format(wav, streaming=False) is wav
    with pytest.raises(ConfigurationError, match="pcm_mulaw is a streaming format"):
        check_output_format(mulaw, streaming=False)
    with pytest.raises(ConfigurationError, match="not wav"):
        check_output_format(wav, streaming=True)
    with pytest.raises(ConfigurationError, match="output_format"):
        check_output_format("raw", streaming=True)


@pytest.mark.parametrize("container", ["ogg", "RAW", "", None, 1])
def test_output_format_rejects_bad_containers(container: Any) -> None:
    with pytest.raises(ConfigurationError, match="container"):
        OutputFormat(container=container)


@pytest.mark.parametrize("encoding", ["pcm_u8", "PCM_S16LE", "", None, 16])
def test_output_format_rejects_bad_encodings(encoding: Any) -> None:
    with pytest.raises(ConfigurationError, match="encoding"):
        OutputFormat(encoding=encoding)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_output_format_accepts_sample_rates_in_range(rate: int) -> None:
    assert OutputFormat(sample_rate=rate).to_json()["sample_rate"] == rate


@pytest.mark.parametrize("rate", [7999, 48001, 0, -44100, True, False, 44100.0, "44100", None])
def test_output_format_rejects_bad_sample_rates(rate: Any) -> None:
    with pytest.raises(ConfigurationError, match="sample_rate"):
        OutputFormat(sample_rate=rate)


def test_mp3_bit_rate_is_left_to_the_service_unless_given() -> None:
    assert OutputFormat(container="mp3").to_json() == {
        "container": "mp3",
        "encoding": "pcm_s16le",
        "sample_rate": 24000,
    }


@pytest.mark.parametrize("bit_rate", [32000, 128000, 320000])
def test_mp3_bit_rate_given(bit_rate: int) -> None:
    assert OutputFormat(container="mp3", bit_rate=bit_rate).to_json()["bit_rate"] == bit_rate


@pytest.mark.parametrize("container", ["raw", "wav"])
def test_bit_rate_is_mp3_only(container: Any) -> None:
    assert "bit_rate" not in OutputFormat(container=container, bit_rate=128000).to_json()


@pytest.mark.parametrize("bit_rate", [31999, 320001, 0, True, 128000.0, "128000"])
def test_output_format_rejects_bad_bit_rates(bit_rate: Any) -> None:
    with pytest.raises(ConfigurationError, match="bit_rate"):
        OutputFormat(container="mp3", bit_rate=bit_rate)


def test_output_format_is_frozen_and_comparable() -> None:
    fmt = OutputFormat(sample_rate=16000)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fmt.sample_rate = 8000  # type: ignore[misc]
    assert fmt == OutputFormat(sample_rate=16000)
    assert fmt != OutputFormat()
    assert hash(fmt) == hash(OutputFormat(sample_rate=16000))


def test_evolve_validates_too() -> None:
    with pytest.raises(ConfigurationError):
        attrs.evolve(OutputFormat(), sample_rate=100)


# ------------------------------------------------------ AudioChunk, metrics


def test_audio_chunk_duration() -> None:
    assert AudioChunk(b"\x00" * 88200, sample_rate=44100).duration == pytest.approx(1.0)
    assert AudioChunk(b"\x00" * 4800, sample_rate=24000, encoding="pcm_f32le").duration == pytest.approx(0.05)
    assert AudioChunk(b"", sample_rate=8000).duration == 0.0
    assert AudioChunk(b"\xff" * 4000, sample_rate=8000, encoding="pcm_mulaw").duration == pytest.approx(0.5)
    assert AudioChunk(b"\xff" * 1000, sample_rate=44100, container="mp3").duration == 0.0


def test_audio_chunk_defaults_and_repr() -> None:
    chunk = AudioChunk(b"\x01" * 500, sample_rate=16000)
    assert (chunk.num_channels, chunk.encoding, chunk.container, chunk.context_id) == (
        1,
        "pcm_s16le",
        "raw",
        None,
    )
    assert "<500 bytes>" in repr(chunk)
    assert "\\x01" not in repr(chunk)


def test_utterance_metrics_defaults() -> None:
    metrics = UtteranceMetrics()
    assert (metrics.ttfb, metrics.processing_time, metrics.characters, metrics.audio_bytes) == (
        None,
        None,
        0,
        0,
    )


# ------------------------------------------------------------------ Settings


def test_settings_defaults_and_request_body() -> None:
    settings = Settings(voice_id="v1")
    assert settings.model == DEFAULT_MODEL
    assert settings.language is None
    assert settings.output_format == OutputFormat()
    assert settings.request_body() == {
        "model_id": DEFAULT_MODEL,
        "voice": {"mode": "id", "id": "v1"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000},
    }


def test_settings_request_body_with_language() -> None:
    body = Settings(voice_id="v1", language="fr").request_body()
    assert body["language"] == "fr"


def test_default_model_is_the_real_time_one() -> None:
    assert DEFAULT_MODEL == "async_flash_v1.5"


def test_voice_controls_are_sent_only_when_set() -> None:
    body = Settings(voice_id="v", speed_control=1.5, stability=40).request_body()
    assert (body["speed_control"], body["stability"]) == (1.5, 40)
    assert isinstance(Settings(voice_id="v", speed_control=2).speed_control, float)
    plain = Settings(voice_id="v").request_body()
    assert "speed_control" not in plain
    assert "stability" not in plain
    # Not refused for models that ignore them: model ids are open.
    assert Settings(voice_id="v", model="async_pro_v1.0", stability=0).request_body()["stability"] == 0


@pytest.mark.parametrize("speed", [0.69, 2.01, -1, float("nan"), True, "1.0", [1]])
def test_speed_control_range_and_type(speed: Any) -> None:
    with pytest.raises(ConfigurationError, match="speed_control"):
        Settings(voice_id="v", speed_control=speed)
    with pytest.raises(ConfigurationError, match="speed_control"):
        Settings(voice_id="v").with_changes(speed_control=speed)


@pytest.mark.parametrize("stability", [-1, 101, 50.0, True, "50"])
def test_stability_range_and_type(stability: Any) -> None:
    with pytest.raises(ConfigurationError, match="stability"):
        Settings(voice_id="v", stability=stability)
    with pytest.raises(ConfigurationError, match="stability"):
        Settings(voice_id="v").with_changes(stability=stability)


@pytest.mark.parametrize(("speed", "stability"), [(0.7, 0), (2.0, 100), (1, 50)])
def test_voice_controls_at_the_edges(speed: float, stability: int) -> None:
    settings = Settings(voice_id="v").with_changes(speed_control=speed, stability=stability)
    assert (settings.speed_control, settings.stability) == (speed, stability)
    assert settings.with_changes(model="m").speed_control == speed  # kept by other changes


def test_unknown_models_are_not_refused_client_side() -> None:
    assert Settings(voice_id="v", model="asyncflow_future_v9").request_body()["model_id"] == (
        "asyncflow_future_v9"
    )


@pytest.mark.parametrize("voice_id", ["", "   ", None, 5])
def test_settings_requires_a_voice(voice_id: Any) -> None:
    with pytest.raises(ConfigurationError, match="voice_id"):
        Settings(voice_id=voice_id)


@pytest.mark.parametrize("model", ["", "  ", None])
def test_settings_rejects_empty_models(model: Any) -> None:
    with pytest.raises(ConfigurationError, match="model"):
        Settings(voice_id="v", model=model)


def test_settings_rejects_a_bad_output_format() -> None:
    with pytest.raises(ConfigurationError, match="output_format"):
        Settings(voice_id="v", output_format={"container": "raw"})  # type: ignore[arg-type]


def test_settings_normalizes_language_on_construction() -> None:
    assert Settings(voice_id="v", language="en-US").language == "en"
    assert Settings(voice_id="v", language="en-US").request_body()["language"] == "en"


def test_with_changes_replaces_only_what_is_given() -> None:
    fmt = OutputFormat(container="mp3", sample_rate=22050)
    base = Settings(voice_id="v1", model="m1", language="de")
    changed = base.with_changes(voice_id="v2", output_format=fmt)
    assert changed == Settings(voice_id="v2", model="m1", language="de", output_format=fmt)
    assert base == Settings(voice_id="v1", model="m1", language="de")  # unchanged
    assert base.with_changes() == base
    assert base.with_changes(model="m2").model == "m2"
    assert base.with_changes(model="m2").voice_id == "v1"


def test_with_changes_strips_and_validates() -> None:
    base = Settings(voice_id="v1")
    assert base.with_changes(voice_id="  v2  ").voice_id == "v2"
    with pytest.raises(ConfigurationError, match="voice_id"):
        base.with_changes(voice_id="  ")
    with pytest.raises(ConfigurationError, match="model"):
        base.with_changes(model="")
    with pytest.raises(ConfigurationError, match="output_format"):
        base.with_changes(output_format="mp3")  # type: ignore[arg-type]


class Language(enum.Enum):
    PT_BR = "pt-BR"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("en-US", "en"),
        ("en", "en"),
        ("EN", "en"),
        ("pt_BR", "pt"),
        (" zh-Hans-CN ", "zh"),
        (Language.PT_BR, "pt"),
    ],
)
def test_with_changes_normalizes_language(given: object, expected: str) -> None:
    assert Settings(voice_id="v").with_changes(language=given).language == expected
    assert normalize_language(given) == expected


def test_normalize_language_edges() -> None:
    assert normalize_language(None) is None
    with pytest.raises(ConfigurationError, match="language"):
        normalize_language("")
    with pytest.raises(ConfigurationError, match="language"):
        normalize_language(5)


# -------------------------------------------------------- the environment


def test_resolve_api_key() -> None:
    env = {"ASYNCAI_API_KEY": "sk_env"}
    assert resolve_api_key("sk_given", env=env) == ApiKey("sk_given")
    assert resolve_api_key(None, env=env) == ApiKey("sk_env")
    assert resolve_api_key(None, env={}) is None
    assert resolve_api_key(None, env={"ASYNCAI_API_KEY": "  "}) is None
    assert resolve_api_key("", env=env) is None  # given but empty: no key, not the env's
    assert resolve_api_key("  sk_padded\n", env={}) == ApiKey("sk_padded")


@pytest.mark.parametrize("bad", ["sk_a b", "sk_a\tb", "sk_\x00x", "sk_\x1bx"])
def test_resolve_api_key_rejects_whitespace_and_control_characters(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="api_key"):
        resolve_api_key(bad, env={})
    with pytest.raises(ConfigurationError, match="api_key"):
        resolve_api_key(None, env={"ASYNCAI_API_KEY": bad})


def test_resolve_api_key_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCAI_API_KEY", "sk_from_os")
    assert resolve_api_key(None) == ApiKey("sk_from_os")
    monkeypatch.delenv("ASYNCAI_API_KEY")
    assert resolve_api_key(None) is None


def test_api_key_repr_redacts() -> None:
    key = ApiKey("sk_live_123456")
    assert repr(key) == "ApiKey('***')"
    assert str(key) == "ApiKey('***')"
    assert key.value == "sk_live_123456"


def test_resolve_base_url() -> None:
    env = {"ASYNCAI_BASE_URL": "http://127.0.0.1:8000/"}
    assert resolve_base_url(None, env={}) == DEFAULT_BASE_URL
    assert resolve_base_url(None, env={"ASYNCAI_BASE_URL": ""}) == DEFAULT_BASE_URL
    assert resolve_base_url(None, env=env) == "http://127.0.0.1:8000"
    assert resolve_base_url("https://api.async.ai//", env=env) == "https://api.async.ai"
    assert resolve_base_url(" wss://host:1 ", env={}) == "wss://host:1"
    assert resolve_base_url("WS://host", env={}) == "WS://host"


@pytest.mark.parametrize("bad", ["api.async.com", "ftp://api.async.com", "", "://x"])
def test_resolve_base_url_rejects_other_schemes(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        resolve_base_url(bad, env={})
    with pytest.raises(ConfigurationError, match="base_url"):
        resolve_base_url(None, env={"ASYNCAI_BASE_URL": bad or "x"})


@pytest.mark.parametrize(
    "url",
    [
        "https://user:sk_secret_123@api.async.com",
        "https://sk_secret_123@api.async.com",
        "https://api.async.com/?api_key=sk_secret_123",
        "https://api.async.com/#sk_secret_123",
        "sk_secret_123",
        "https://api.async.com:sk_secret_123",
    ],
)
def test_resolve_base_url_refuses_a_key_in_the_url_without_showing_it(url: str) -> None:
    """The base URL is shown in reprs and errors, so it may not carry a key; the refusal does not echo it."""
    with pytest.raises(ConfigurationError, match="base_url") as info:
        resolve_base_url(url, env={})
    assert "sk_secret_123" not in str(info.value)


def test_resolve_base_url_rejects_non_str() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        resolve_base_url(b"https://x", env={})  # type: ignore[arg-type]


def test_resolve_base_url_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCAI_BASE_URL", "http://localhost:9")
    assert resolve_base_url(None) == "http://localhost:9"


def test_resolve_voice_id() -> None:
    env = {"ASYNCAI_VOICE_ID": " env-voice "}
    assert resolve_voice_id("given", env=env) == "given"
    assert resolve_voice_id(None, env=env) == "env-voice"
    assert resolve_voice_id(None, env={}) is None
    with pytest.raises(ConfigurationError, match="voice_id"):
        resolve_voice_id("   ", env=env)
    with pytest.raises(ConfigurationError, match="voice_id"):
        resolve_voice_id(7, env={})  # type: ignore[arg-type]


def test_resolve_voice_id_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCAI_VOICE_ID", "os-voice")
    assert resolve_voice_id(None) == "os-voice"
    monkeypatch.delenv("ASYNCAI_VOICE_ID")
    assert resolve_voice_id(None) is None


def test_one_list_of_what_can_change_at_runtime() -> None:
    """Settings' fields are the list; the typed mirror and the settings frame follow it."""
    fields = attrs.fields_dict(Settings)
    assert set(typing.get_type_hints(SettingsChanges)) == set(fields)
    frame = set(attrs.fields_dict(TTSUpdateSettingsFrame))
    assert frame <= set(fields)
    assert set(fields) - frame == {"output_format"}  # the pipeline sets its format once


def test_settings_changes_are_checked_once_by_the_setting_s_own_rule() -> None:
    settings = Settings(voice_id="v")
    changed = settings.with_changes(language="fr-CA", speed_control=1, stability=None)
    assert (changed.language, changed.speed_control, changed.stability) == ("fr", 1.0, None)
    assert Settings.check_changes({"voice_id": " v2 ", "model": None}) == {"voice_id": "v2"}
    with pytest.raises(ConfigurationError, match="speed_control"):
        settings.with_changes(speed_control=9.0)
    with pytest.raises(TypeError, match="not a setting"):
        Settings.check_changes({"sample_rate": 8000})
