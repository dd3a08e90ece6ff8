"""Scoring a clip end to end (files, lengths, loudness, JSON) and `python -m mumu score-video` on bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

import mumu.pipeline
from bench.video_scoring import SR, click_track, downbeat_onsets, make_clip
from media.audio_io import load_audio
from media.video_io import video_duration
from mumu.cli import main
from mumu.pipeline import MuMuPipeline
from mumu.scoring import ScoreSettings, parse_hit_points, score_video
from mumu.timeline import timeline_image

CUTS = [2.12, 4.04]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 6.0, CUTS, speech=(0.8, 2.6))


@pytest.fixture(scope="module")
def track(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("track") / "beat.wav"
    sf.write(path, click_track(120.0, 5.0)[0], SR)
    return path


@pytest.fixture(scope="module")
def scored(clip, track, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "scored.mp4"
    return score_video(clip, track, out, ScoreSettings(keep_original_audio=True, stem_format="flac"))


def test_delivers_a_muxed_clip_of_the_same_length_with_stem_and_cue_sheets(clip, scored) -> None:
    assert video_duration(scored.video) == pytest.approx(video_duration(clip), abs=1e-6)
    with av.open(str(scored.video)) as muxed:
        assert [s.type for s in muxed.streams] == ["video", "audio"]
    assert len(scored.mix.mix) == round(6.0 * SR)  # the soundtrack is the clip's length to the sample
    assert scored.stem.suffix == ".flac" and sf.info(scored.stem).frames == round(6.0 * SR)
    report = json.loads(scored.cue_json.read_text())
    assert report == json.loads(json.dumps(scored.report()))
    rows = list(csv.DictReader(scored.cue_csv.open()))
    assert {r["kind"] for r in rows} >= {"hit_point", "cut", "downbeat_before", "downbeat_after", "speech_start"}


def test_fitting_lands_downbeats_on_the_cuts(scored) -> None:
    report = scored.report()
    assert report["hit_points"] == CUTS
    assert sorted(float(h) for h in report["music"]["after"]["hits"]) == CUTS
    onsets = downbeat_onsets(scored.scored.fitted.waveform, SR)
    assert all(np.abs(onsets - cut).min() <= 0.05 for cut in CUTS)
    assert report["scores"]["after"]["bhs"] == 1.0
    assert report["scores"]["before"]["bhs"] < 1.0


def test_loudness_of_the_delivered_soundtrack(scored) -> None:
    decoded = load_audio(scored.video, SR)  # what a player plays: the muxed AAC, decoded
    measured = pyloudnorm.Meter(SR).integrated_loudness(decoded.astype(np.float64))
    assert measured == pytest.approx(-14.0, abs=0.5)
    assert scored.mix.levelling.reached and scored.mix.true_peak_db <= -1.0
    assert scored.mix.ducked and scored.scored.clip.speech


def test_timeline_picture(scored) -> None:
    image = timeline_image(scored)
    assert image.size == (1200, 360)
    # Waveform, speech, cuts, hit points and beats are all drawn, each in its own colour.
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 4


def test_hit_points_are_parsed_and_checked(clip, track, tmp_path) -> None:
    assert parse_hit_points("auto") == "auto" and parse_hit_points(" none ") == "none"
    assert parse_hit_points("1.5, 4,7.25") == [1.5, 4.0, 7.25]
    with pytest.raises(ValueError, match="comma-separated seconds"):
        parse_hit_points("1.5,soon")
    with pytest.raises(ValueError, match=r"hit point 9.5 s is outside the clip 'clip.mp4' \(0 to 6.000 s"):
        score_video(clip, track, tmp_path / "x.mp4", ScoreSettings(hit_points=[1.0, 9.5]))


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["score-video", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_json(clip, track, tmp_path, capsys) -> None:
    code, out, _ = _cli(capsys, "--video", str(clip), "--music", str(track), "--out", str(tmp_path / "o.mp4"),
                        "--hit-points", "2.12", "--duck", "9", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["hit_points"] == [2.12] and data["clip"]["cuts"] == CUTS
    assert set(data["music"]["before"]) >= {"tempo", "beats", "downbeats"}
    assert set(data["scores"]) == {"before", "after"} and Path(data["outputs"]["stem"]).exists()


def _long_clip(path: Path, seconds: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        frame = np.zeros((16, 16, 3), np.uint8)
        for _ in range(seconds):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_cli_refuses_every_bad_input_with_one_line(clip, track, tmp_path, capsys) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    song = tmp_path / "song.mov"
    song.write_bytes(track.read_bytes())
    long = _long_clip(tmp_path / "long.mp4", 901)
    out = str(tmp_path / "o.mp4")
    cases = [
        (["--video", str(song), "--music", str(track)], "'song.mov': has no video stream"),
        (["--video", str(empty), "--music", str(track)], "'empty.mp4': file is empty (0 bytes)"),
        (["--video", str(long), "--music", str(track)], "'long.mp4': video is 901.0 s long, over the 900 s limit"),
        (["--video", str(clip), "--music", str(track), "--hit-points", "7"], "hit point 7 s is outside the clip"),
        (["--video", str(clip), "--music", str(empty)], "'empty.mp4': file is empty"),
        (["--video", str(clip), "--music", str(track), "--loudness", "5"], "loudness 5.0 LUFS is out of range"),
        (["--video", str(clip), "--music", str(track), "--duck", "-3"], "ducking depth -3.0 dB is out of range"),
    ]
    for args, message in cases:
        code, stdout, err = _cli(capsys, *args, "--out", out)
        assert code == 2, args
        assert stdout == ""
        assert err.count("\n") == 1 and message in err, (args, err)
    code, _, err = _cli(capsys, "--video", str(clip), "--music", str(track), "--out", str(tmp_path / "o.mkv"))
    assert code == 2 and "'o.mkv': the scored video is written as .mp4" in err


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return MuMuPipeline.from_profile("tiny", out_dir=tmp_path_factory.mktemp("chat"))


def test_cli_prompt_makes_the_music_with_the_model(clip, tmp_path, capsys, monkeypatch, pipeline) -> None:
    def from_profile(name, decoder="musicgen", device="cpu", out_dir="outputs"):
        return pipeline

    monkeypatch.setattr(mumu.pipeline.MuMuPipeline, "from_profile", staticmethod(from_profile))
    code, out, err = _cli(capsys, "--video", str(clip), "--prompt", "upbeat drums", "--out",
                          str(tmp_path / "p.mp4"), "--seed", "3", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["mix"]["samples"] == round(6.0 * SR)
    assert video_duration(data["outputs"]["video"]) == pytest.approx(video_duration(clip), abs=1e-6)


def test_chat_with_a_video_fits_the_track_to_it(clip, pipeline) -> None:
    from mumu.pipeline import ChatOptions

    conv = pipeline.new_conversation()
    reply = pipeline.chat(conv, "score this clip", video=clip,
                          options=ChatOptions(music="always", fit_video=True, max_new_tokens=8))
    assert sf.info(reply.audio).frames == round(6.0 * SR)  # fitted: the clip's length to the sample
    assert reply.info["score"]["cuts"] == CUTS
    assert set(reply.info["score"]["scores"]) == {"before", "after"}
    assert video_duration(reply.video) == pytest.approx(video_duration(clip), abs=1e-6)


def test_composing_for_a_clip_asks_for_what_fitting_may_use_and_leaves_no_files(clip, pipeline) -> None:
    from media.fit_music import FitSettings
    from mumu.scoring import RATE, compose_for_video

    folders = set(pipeline.out_dir.glob("*"))
    wave, rate = compose_for_video(pipeline, clip, "upbeat drums", seed=3)
    fit = FitSettings()
    wanted = min(6.0 * (1 + fit.max_tempo_change) + fit.tail[1], pipeline.config.decoder.max_duration)
    assert rate == RATE and len(wave) / rate == pytest.approx(wanted, abs=0.05)
    assert set(pipeline.out_dir.glob("*")) == folders  # the throwaway conversation's folder is gone
