"""MuMuPipeline: multi-turn media memory, edits of generated tracks, caches, truncation, streaming, threads."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from generation.config import SamplingSettings
from generation.musicgen import CROSSFADE_SECONDS
from media.errors import MediaError
from mumu.pipeline import ChatOptions, MuMuPipeline

SR = 24000


def _options(music="never", decoder=None, conditioning=None, **kw):
    return ChatOptions(music=music, max_new_tokens=12, decoder=decoder, conditioning=conditioning,
                       sampling=SamplingSettings(duration=0.3, **kw))


@pytest.fixture
def pipeline(tmp_path):
    return MuMuPipeline.from_profile("tiny", out_dir=tmp_path / "out")


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 330 * np.arange(SR) / SR), SR)
    return path


def _spy_prompts(pipeline, monkeypatch):
    import mumu.scheduler as module

    seen = []
    real = module.decode

    def spy(model, requests, join=None, prefix_cache=None):
        seen.append((requests[0].prompt, requests[0].media))
        return real(model, requests, join, prefix_cache)

    monkeypatch.setattr(module, "decode", spy)
    return seen


def test_three_turns_remember_media_and_edit_the_generated_track(pipeline, song, monkeypatch):
    pipeline.config.pipeline.output_lufs = None  # keep levels so the edit can be compared with its source
    seen = _spy_prompts(pipeline, monkeypatch)
    conv = pipeline.new_conversation()
    first = pipeline.chat(conv, "describe this song", audio=song, options=_options())
    assert first.audio is None
    assert conv.active == {"music": "music-1"}

    second = pipeline.chat(conv, "make music in its style", options=_options("always"))
    assert second.track == "track-2"
    assert sf.info(second.audio).duration == pytest.approx(0.3, abs=0.01)
    # Turn 2 saw turn 1's audio without re-attaching it, and the history reached the model.
    music_features = seen[1][1].music[0]
    assert music_features is pipeline.features.get(("music", conv.item("music-1").digest))
    tokens = pipeline.model.tokenizer("describe this song", add_special_tokens=False).input_ids
    prompt = seen[1][0]
    assert any(prompt[i : i + len(tokens)] == tokens for i in range(len(prompt)))

    third = pipeline.chat(conv, "slower, keep the melody", edit="track-2", options=_options("always"))
    assert third.track == "track-3"
    source, _ = sf.read(second.audio)
    edited, _ = sf.read(third.audio)
    # The continuation decoder keeps the source: the edit starts with the turn-2 track (to 16-bit precision;
    # the source is cut to whole codec frames and its last 100 ms crossfade into the continuation).
    assert len(edited) > len(source)
    hop = pipeline.decoder.hop
    keep = len(source) // hop * hop - round(CROSSFADE_SECONDS * pipeline.decoder.sample_rate)
    np.testing.assert_allclose(edited[:keep], source[:keep], atol=2 / 32768)
    assert pipeline.encoder_runs == {"music": 2, "image": 0, "video": 0}  # song + track-2, each once
    assert [m.role for m in conv.messages] == ["user", "assistant"] * 3
    assert conv.messages[3].music and not conv.messages[1].music


def test_same_content_under_another_name_is_not_re_encoded(pipeline, song, tmp_path):
    copy = tmp_path / "copy.wav"
    shutil.copy(song, copy)
    pipeline.chat(pipeline.new_conversation(), "hi", audio=song, options=_options())
    pipeline.chat(pipeline.new_conversation(), "hi", audio=copy, options=_options())
    assert pipeline.encoder_runs["music"] == 1


def test_old_turns_are_dropped_first_and_the_caller_is_told(pipeline):
    pipeline.config.pipeline.max_context_tokens = 140
    conv = pipeline.new_conversation()
    replies = [pipeline.chat(conv, f"turn {i} with some words", options=_options()) for i in range(4)]
    assert replies[0].dropped_turns == 0
    assert replies[-1].dropped_turns > 0
    assert "oldest" in replies[-1].notes[0]
    assert len(conv.messages) == 8  # nothing is deleted from the conversation itself


def test_music_modes_are_honoured(pipeline):
    conv = pipeline.new_conversation()
    assert pipeline.chat(conv, "music please", options=_options("always")).audio is not None
    assert pipeline.chat(conv, "music please", options=_options("never")).audio is None


def test_stream_yields_text_then_the_reply(pipeline):
    conv = pipeline.new_conversation()
    events = list(pipeline.stream(conv, "describe the music", options=_options("always")))
    assert events[-1]["type"] == "reply"
    reply = events[-1]["reply"]
    assert reply.audio is not None
    streamed = "".join(e["delta"] for e in events if e["type"] == "text")
    assert streamed.strip() == reply.text
    kinds = [e["type"] for e in events]
    assert kinds.count("status") == 1 and kinds.index("status") > kinds.index("text")  # text first, then music
    assert events[kinds.index("status")]["stage"] == "music"


def test_concurrent_conversations_get_their_own_answers_and_files(pipeline):
    texts = ["calm piano", "fast drums", "dark synth"]
    alone = {}
    for text in texts:
        reply = pipeline.chat(pipeline.new_conversation(), text, options=_options("always", seed=3))
        alone[text] = (reply.text, sf.read(reply.audio)[0])
    results = {}

    def run(text):
        conv = pipeline.new_conversation()
        results[text] = (conv, pipeline.chat(conv, text, options=_options("always", seed=3)))

    threads = [threading.Thread(target=run, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    paths = {results[t][1].audio for t in texts}
    assert len(paths) == 3
    for text in texts:
        conv, reply = results[text]
        assert reply.text == alone[text][0]
        assert reply.audio.startswith(str(conv.out_dir))
        np.testing.assert_array_equal(sf.read(reply.audio)[0], alone[text][1])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"text": "   "}, "the message is empty"),
    ({"text": "x" * 5000}, "5000 characters, over the 4000 limit"),
    ({"text": "hi", "options": ChatOptions(music="maybe")}, "music must be one of"),
    ({"text": "hi", "options": ChatOptions(sampling=SamplingSettings(duration=0))}, "duration=0 is out of range"),
    ({"text": "hi", "use": {"music": "music-9"}}, "no media 'music-9'"),
    ({"text": "hi", "edit": "track-1"}, "no media 'track-1'"),
    ({"text": "hi", "options": ChatOptions(decoder="jukebox")},
     "unknown decoder 'jukebox'; choose one of musicgen, musicgen_melody, audioldm2"),
    ({"text": "hi", "options": ChatOptions(conditioning="words")},
     "conditioning must be one of embeddings, caption, got 'words'"),
    ({"text": "hi", "options": ChatOptions(decoder="audioldm2", conditioning="embeddings")},
     r"conditioning='embeddings' needs the model's own decoder \(musicgen\)"),
])
def test_bad_requests_leave_the_conversation_unchanged(pipeline, kwargs, message):
    conv = pipeline.new_conversation()
    with pytest.raises(ValueError, match=message):
        pipeline.chat(conv, **kwargs)
    assert conv.messages == []


def test_bad_media_is_reported_and_not_remembered(pipeline, tmp_path, song):
    fake = tmp_path / "fake.wav"
    fake.write_text("not audio")
    conv = pipeline.new_conversation()
    with pytest.raises(MediaError, match=r"'fake\.wav'"):
        pipeline.chat(conv, "hi", audio=fake)
    with pytest.raises(MediaError, match=r"'song\.wav': is an audio file but was attached as image"):
        pipeline.chat(conv, "hi", image=song)
    assert conv.media == [] and conv.messages == []


def test_turn_limit(pipeline):
    pipeline.config.pipeline.max_turns = 1
    conv = pipeline.new_conversation()
    pipeline.chat(conv, "one", options=_options())
    with pytest.raises(ValueError, match="1-turn limit"):
        pipeline.chat(conv, "two", options=_options())


def test_pipeline_and_cli_load_a_saved_checkpoint(tmp_path, capsys):
    from mumu.builder import build_model
    from mumu.checkpoint import save_pretrained
    from mumu.cli import main
    from mumu.profiles import tiny

    save_pretrained(build_model(tiny()), tmp_path / "ckpt")
    pipe = MuMuPipeline.from_pretrained(tmp_path / "ckpt", out_dir=tmp_path / "out")
    reply = pipe.chat(pipe.new_conversation(), "hello", options=_options("always"))
    assert reply.audio is not None
    code = main(["chat", "--checkpoint", str(tmp_path / "ckpt"), "--text", "hi", "--music", "never",
                 "--max-new-tokens", "4", "--json", "--out-dir", str(tmp_path / "cli")])
    assert code == 0
    assert '"audio": null' in capsys.readouterr().out
    assert main(["chat", "--checkpoint", str(tmp_path / "nowhere"), "--text", "hi"]) == 2
    assert "no checkpoint directory" in capsys.readouterr().err


def test_stream_reraises_worker_errors_in_the_caller(pipeline, monkeypatch):
    import mumu.scheduler as module

    def broken(*args, **kwargs):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(module, "decode", broken)
    with pytest.raises(RuntimeError, match="decoder exploded"):
        list(pipeline.stream(pipeline.new_conversation(), "hi", options=_options()))
    with pytest.raises(ValueError, match="the message is empty"):
        list(pipeline.stream(pipeline.new_conversation(), " "))


def test_a_failed_turn_does_not_keep_its_attachments(pipeline, song):
    conv = pipeline.new_conversation()
    with pytest.raises(ValueError, match="no media 'image-7'"):
        pipeline.chat(conv, "hi", audio=song, use={"image": "image-7"}, options=_options())
    assert conv.media == [] and conv.active == {} and conv.messages == []
    pipeline.chat(conv, "hi", audio=song, options=_options())
    assert [m.id for m in conv.media] == ["music-2"] and conv.active == {"music": "music-2"}


def test_undo_forgets_the_last_turn_and_its_files(pipeline, song, tmp_path):
    conv = pipeline.new_conversation()
    pipeline.chat(conv, "listen", audio=song, options=_options())
    other = tmp_path / "other.wav"
    sf.write(other, 0.2 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR), SR)
    reply = pipeline.chat(conv, "now this one, and make music", audio=other, options=_options("always"))
    assert conv.active == {"music": "music-2"}
    assert pipeline.undo(conv)
    assert [m.text for m in conv.messages] == ["listen", conv.messages[1].text]
    assert [m.id for m in conv.media] == ["music-1"] and conv.active == {"music": "music-1"}
    assert not Path(reply.audio).exists()
    assert pipeline.undo(conv) and conv.messages == [] and conv.media == []
    assert not pipeline.undo(conv)


def test_closing_the_stream_cancels_the_turn(pipeline, song):
    conv = pipeline.new_conversation()
    before = threading.active_count()
    events = pipeline.stream(conv, "describe", audio=song,
                             options=ChatOptions(music="always", max_new_tokens=40))
    assert next(events)["type"] == "text"
    events.close()
    for _ in range(200):  # the worker notices at its next token and ends
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= before
    assert conv.messages == [] and conv.media == [] and conv.turn_media == []
    assert not conv.out_dir.exists() or not list(conv.out_dir.glob("*.wav"))
    reply = pipeline.chat(conv, "describe", audio=song, options=_options())  # still usable afterwards
    assert reply.text is not None and len(conv.messages) == 2


def test_music_for_a_video_matches_its_length_and_comes_muxed(pipeline):
    import av

    conv = pipeline.new_conversation()
    reply = pipeline.chat(conv, "score this clip", video="demo/examples/clip.mp4",
                          options=ChatOptions(music="always", fit_video=True, max_new_tokens=8))
    assert sf.info(reply.audio).duration == pytest.approx(2.0, abs=0.01)
    with av.open(reply.video) as muxed:
        assert [s.type for s in muxed.streams] == ["video", "audio"]
    assert pipeline.undo(conv)
    assert not Path(reply.video).exists()


def test_exact_edits_of_a_track_become_a_new_track(pipeline, song):
    from media.edits import EditPlan

    conv = pipeline.new_conversation()
    pipeline.chat(conv, "listen", audio=song, options=_options())
    reply = pipeline.chat(conv, "music", options=_options("always"))
    item = pipeline.edit_track(conv, reply.track, EditPlan(tempo=1.5, loop=2))
    assert item.generated and item.id != reply.track
    source_seconds = sf.info(reply.audio).duration
    assert sf.info(item.path).duration == pytest.approx(2 * source_seconds / 1.5, rel=0.1)
    uploaded = pipeline.edit_track(conv, "music-1", EditPlan(semitones=2))  # an upload is edited like any track
    assert sf.info(uploaded.path).duration == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match=r"tempo=9 is out of range: expected a value in \[0.25, 4\]"):
        pipeline.edit_track(conv, "music-1", EditPlan(tempo=9))
    with pytest.raises(ValueError, match="no media 'track-9'"):
        pipeline.edit_track(conv, "track-9", EditPlan())


def test_another_decoder_makes_music_from_the_reply_text_and_is_built_once(pipeline, monkeypatch):
    import mumu.decoder_pool as module
    from media.audio_out import read_metadata

    assert pipeline.decoder_choices == ("musicgen", "musicgen_melody", "audioldm2")
    assert pipeline.loaded_decoders == ("musicgen",)
    builds = []
    real = module.build_decoder
    monkeypatch.setattr(module, "build_decoder", lambda cfg, **kw: builds.append(cfg.kind) or real(cfg, **kw))
    conv = pipeline.new_conversation()
    first = pipeline.chat(conv, "calm piano", options=_options("always", decoder="audioldm2", seed=4))
    assert first.sample_rate == 16000 and sf.info(first.audio).samplerate == 16000
    assert sf.info(first.audio).duration == pytest.approx(0.3, abs=0.01)
    assert first.info["decoder"] == "audioldm2" and first.info["conditioning"] == "caption"
    assert first.info["caption"] == (first.text or "calm piano")
    assert first.info["decoder_info"]["mode"] == "caption"
    assert "decoder_load" in first.timings and "projector" not in first.timings
    assert any("caption mode" in note for note in first.notes)
    assert read_metadata(first.audio)["conditioning"] == "caption"
    assert read_metadata(first.audio)["model"].endswith("audioldm2")

    second = pipeline.chat(conv, "again", options=_options("always", decoder="audioldm2", seed=4))
    assert builds == ["audioldm2"] and pipeline.loaded_decoders == ("musicgen", "audioldm2")  # built once, reused
    assert second.sample_rate == 16000 and "decoder_load" not in second.timings
    assert not any("caption mode" in note for note in second.notes)  # said once per conversation
    own = pipeline.chat(conv, "and with yours", options=_options("always"))
    assert own.sample_rate == 8000 and own.info["conditioning"] == "embeddings" and "projector" in own.timings
    assert pipeline.decoder_for() is pipeline.decoder and builds == ["audioldm2"]
    # A random-init decoder is seeded: another pipeline builds the very same one.
    again = MuMuPipeline.from_profile("tiny", out_dir=pipeline.out_dir).decoder_for("audioldm2")
    for key, value in pipeline.decoder_for("audioldm2").pipe.unet.state_dict().items():
        assert again.pipe.unet.state_dict()[key].equal(value)


def test_caption_mode_with_the_models_own_decoder(pipeline):
    conv = pipeline.new_conversation()
    reply = pipeline.chat(conv, "bright synth", options=_options("always", conditioning="caption"))
    assert reply.sample_rate == 8000 and reply.info["conditioning"] == "caption"
    assert reply.info["decoder_info"]["mode"] == "caption" and "projector" not in reply.timings
    assert not any("caption mode" in note for note in reply.notes)  # the user chose it: nothing to explain
    pipeline.config.pipeline.conditioning = "caption"  # the config's default, used when the turn says nothing
    assert pipeline.chat(conv, "more", options=_options("always")).info["conditioning"] == "caption"


def test_edits_follow_the_chosen_decoder(pipeline, song):
    conv = pipeline.new_conversation()
    pipeline.chat(conv, "listen", audio=song, options=_options())
    melody = pipeline.chat(conv, "keep its melody", edit="music-1",
                           options=_options("always", decoder="musicgen_melody"))
    assert melody.info["decoder_info"]["melody"] and melody.info["conditioning"] == "caption"
    assert sf.info(melody.audio).duration == pytest.approx(0.3, abs=0.01)
    before = list(conv.messages)
    with pytest.raises(ValueError, match="the audioldm2 decoder cannot edit audio; choose one that can: musicgen"):
        pipeline.chat(conv, "edit it", edit="music-1", options=_options("always", decoder="audioldm2"))
    assert conv.messages == before


def test_a_decoder_that_fails_to_load_leaves_the_conversation_unchanged(pipeline, monkeypatch):
    import mumu.decoder_pool as module

    real = module.build_decoder

    def offline(cfg, **kwargs):
        raise OSError("no connection to the Hub")

    monkeypatch.setattr(module, "build_decoder", offline)
    conv = pipeline.new_conversation()
    with pytest.raises(OSError, match=r"could not load the audioldm2 decoder: no connection"):
        pipeline.chat(conv, "hi", options=_options("always", decoder="audioldm2"))
    assert conv.messages == [] and conv.media == [] and conv.turn_media == [] and conv.told_caption_mode == set()
    monkeypatch.setattr(module, "build_decoder", real)  # a failed build is not remembered: the next turn retries
    assert pipeline.chat(conv, "hi", options=_options("always", decoder="audioldm2")).sample_rate == 16000



def test_embedding_mode_ranks_by_the_reply_and_a_short_level_is_noted(pipeline, monkeypatch):
    from generation.interface import DecodedAudio

    decoder = pipeline.decoder_for()
    seen = []

    def hiss(cond, settings, source=None):  # near-silence from the decoder: levelling must not boost it 45 dB
        seen.append(cond)
        noise = np.random.default_rng(0).standard_normal(decoder.sample_rate) * 10 ** (-62 / 20)
        return DecodedAudio(noise.astype(np.float32), decoder.sample_rate)

    monkeypatch.setattr(decoder, "generate", hiss)
    conv = pipeline.new_conversation()
    reply = pipeline.chat(conv, "quiet ambient", options=_options("always"))
    assert reply.info["conditioning"] == "embeddings" and seen[0].embeds
    assert seen[0].ranking_text == (reply.text.strip() or "quiet ambient")
    assert any("instead of -14 LUFS" in note and "+20.0 dB" in note for note in reply.notes)
