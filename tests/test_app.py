"""The web demo on the tiny profile, driven through gradio_client like an API caller would."""

from __future__ import annotations

import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import constants

from mumu.model_source import MODEL_ENV
from mumu.pipeline import ChatOptions
from mumu.upstream.hub import CACHE_ENV
from tests.serving import running_app


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # `auto` with no trained model here and the Hub off: the tiny profile (tests/mumu/test_model_source.py covers
    # auto's other decisions).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("converted")))
        patch.delenv(MODEL_ENV, raising=False)
        with running_app("auto") as running:
            yield running


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 330 * np.arange(24000) / 24000), 24000)
    return path


def _ask(client, text, files=(), music="always", duration=1.0, *later):
    """A /chat call; `later` are the controls after the edit choice (match a video's length, decoder)."""
    return client.predict({"text": text, "files": [handle_file(str(f)) for f in files]}, [], music, duration, 0,
                          False, 3, 0, 1, 25, "(none)", *later, api_name="/chat")


def _parts(history, role):
    """Gradio 6 returns each message's content as a list of typed parts."""
    return [part for m in history if m["role"] == role for part in m["content"]]


def test_message_with_audio_gets_text_and_a_track(server, song):
    url, _ = server
    history, _, edit = _ask(Client(url, verbose=False), "make music like this", [song])
    user = _parts(history, "user")
    assert user[0]["type"] == "file" and user[0]["file"].endswith("song.wav")
    assert {"text": "make music like this", "type": "text"} in user
    assistant = _parts(history, "assistant")
    assert assistant[0]["type"] == "text" and assistant[0]["text"]
    (track,) = [p for p in assistant if p.get("component") == "audio"]
    info = sf.info(track["value"])
    assert info.samplerate == 8000 and info.duration == pytest.approx(1.0)
    assert [c[0] for c in edit["choices"]] == ["(none)", track["constructor_args"]["label"]]


def test_two_clients_see_only_their_own_conversation(server, song, monkeypatch):
    url, pipeline = server
    seen = []
    real = pipeline.stream

    def spy(conv, text, **kwargs):
        seen.append((text, conv.id, [m.text for m in conv.messages]))
        return real(conv, text, **kwargs)

    monkeypatch.setattr(pipeline, "stream", spy)
    a, b = Client(url, verbose=False), Client(url, verbose=False)
    _ask(a, "first client", [song])
    _ask(b, "second client")
    _ask(a, "first client again")
    (_, conv_a, _), (_, conv_b, history_b), (_, conv_a2, history_a2) = seen
    assert conv_a == conv_a2 != conv_b
    assert history_b == []  # b starts fresh: nothing of a's conversation
    assert history_a2[0] == "first client" and "second client" not in history_a2
    folders = {path.name for path in pipeline.out_dir.iterdir()}
    assert {conv_a, conv_b} <= folders  # each conversation writes only into its own folder


def test_out_of_range_duration_is_refused(server):
    url, _ = server
    with pytest.raises(AppError, match=r"10000.* greater than maximum value 120"):
        _ask(Client(url, verbose=False), "music", duration=10000)


def test_files_outside_the_app_cannot_be_fetched(server):
    url, _ = server
    for path in ("gradio_api/file=/etc/passwd", "file=/etc/passwd", "gradio_api/file=../../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + path, timeout=10)
        assert info.value.code in (403, 404)


def test_bad_media_is_a_clear_error_and_the_server_keeps_serving(server, tmp_path, song):
    url, _ = server
    fake = tmp_path / "fake.wav"
    fake.write_text("not audio")
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match=r"'fake\.wav': is not a readable audio file"):
        _ask(client, "what is this", [fake])
    history, _, _ = _ask(client, "and this one", [song])
    assert any(p.get("component") == "audio" for p in _parts(history, "assistant"))


def test_undo_and_retry_through_the_api(server, monkeypatch):
    url, pipeline = server
    convs = []
    real = pipeline.stream

    def spy(conv, text, **kwargs):
        convs.append(conv)
        return real(conv, text, **kwargs)

    monkeypatch.setattr(pipeline, "stream", spy)
    client = Client(url, verbose=False)
    _ask(client, "first")
    history, _, _ = _ask(client, "second, with music")
    conv = convs[-1]
    assert convs[0] is conv
    track = conv.media[-1]
    assert [m.text for m in conv.messages][::2] == ["first", "second, with music"]
    assert track.generated and track.path.exists()
    assert any(p.get("component") == "audio" for p in _parts(history, "assistant"))
    client.predict([], api_name="/undo")  # API callers keep their own history, as with /chat
    assert [m.text for m in conv.messages][::2] == ["first"]
    assert not track.path.exists()
    # Retry regenerates the last remaining turn ("first"), with the settings given now (music always).
    again, _, _ = client.predict([], "always", 1.0, 0, False, 3, 0, 1, 25, "(none)", api_name="/retry")
    assert [m.text for m in conv.messages][::2] == ["first"]
    assert conv.messages[-1].music
    assert any(p.get("component") == "audio" for p in _parts(again, "assistant"))
    client.predict([], api_name="/undo")
    with pytest.raises(AppError, match="nothing to retry yet"):
        client.predict([], "always", 1.0, 0, False, 3, 0, 1, 25, "(none)", api_name="/retry")


def test_exact_edit_controls_through_the_api(server):
    url, _ = server
    client = Client(url, verbose=False)
    _, _, edit = _ask(client, "music please")
    track = edit["choices"][-1][0]
    edited, choices = client.predict([], track, 1.25, 0, "", 0, 0.2, 2, None, api_name="/edit")
    (player,) = [p for p in _parts(edited, "assistant") if p.get("component") == "audio"]
    assert sf.info(player["value"]).duration == pytest.approx(2 * 1.0 / 1.25, rel=0.05)
    assert len(choices["choices"]) == 3  # (none), the generated track, the edited one
    with pytest.raises(AppError, match=r"trim start=5\.0, end=9\.0 is out of range"):
        client.predict([], track, 1, 0, "5:9", 0, 0, 1, None, api_name="/edit")
    with pytest.raises(AppError, match="choose a generated track"):
        client.predict([], "(none)", 1, 0, "", 0, 0, 1, None, api_name="/edit")


def test_choosing_audioldm2_in_the_demo_makes_music_from_the_reply_text(server):
    url, pipeline = server
    client = Client(url, verbose=False)
    history, _, _ = _ask(client, "a calm piano piece", (), "always", 1.0, True, "audioldm2")
    (track,) = [p for p in _parts(history, "assistant") if p.get("component") == "audio"]
    info = sf.info(track["value"])
    assert info.samplerate == 16000 and info.duration == pytest.approx(1.0)  # AudioLDM2's rate, not MusicGen's
    notes = [p["text"] for p in _parts(history, "assistant") if p["type"] == "text"]
    assert any("audioldm2 is not the decoder" in n and "caption mode" in n for n in notes)
    assert "audioldm2" in pipeline.loaded_decoders
    history, _, _ = _ask(client, "and now with the trained projector", (), "always", 1.0, True, "musicgen")
    tracks = [p for p in _parts(history, "assistant") if p.get("component") == "audio"]
    assert sf.info(tracks[-1]["value"]).samplerate == 8000
    with pytest.raises(AppError, match="jukebox is not in the list of choices"):  # API callers bypass the dropdown
        _ask(client, "music", (), "always", 1.0, True, "jukebox")


@pytest.mark.slow
def test_two_clients_at_once_share_one_decoding_batch_and_get_their_own_replies(server, monkeypatch):
    url, pipeline = server
    texts = ("first client, at the same time", "the second client asks a longer question at the same time")
    alone = [pipeline.chat(pipeline.new_conversation(), t, options=ChatOptions(music="never")).text for t in texts]
    scheduler = pipeline.scheduler
    monkeypatch.setattr(scheduler, "window_s", 30.0)  # the batch waits for both calls (it starts once both arrive)
    monkeypatch.setattr(scheduler, "max_batch", 2)
    before = len(scheduler.text.batch_sizes)
    jobs = [Client(url, verbose=False).submit({"text": t, "files": []}, [], "never", 1.0, 0, False, 3, 0, 1, 25,
                                              "(none)", api_name="/chat") for t in texts]
    histories = [job.result(timeout=120)[0] for job in jobs]
    assert list(scheduler.text.batch_sizes)[before:] == [2]
    for text, expected, history in zip(texts, alone, histories, strict=True):
        assert {"text": text, "type": "text"} in _parts(history, "user")
        assert _parts(history, "assistant")[0]["text"] == (expected or "(no text)")
