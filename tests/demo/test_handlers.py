"""Handlers check what API callers send, whatever the UI's controls allow."""

from __future__ import annotations

import gradio as gr
import pytest

from demo.handlers import respond
from mumu.pipeline import MuMuPipeline


def test_an_unknown_decoder_is_refused_with_the_choices(tmp_path):
    pipeline = MuMuPipeline.from_profile("tiny", out_dir=tmp_path)
    controls = ("always", 1.0, 0, False, 3.0, 0.0, 1.0, 25, "(none)", True)
    with pytest.raises(gr.Error, match="unknown decoder 'jukebox'; choose one of musicgen, musicgen_melody, audioldm2"):
        list(respond(pipeline, {"text": "music", "files": []}, [], None, *controls, "jukebox"))
    history, _, session, _ = list(respond(pipeline, {"text": "music", "files": []}, [], None, *controls, None))[-1]
    assert session.conversation.messages[-1].music and history[-1]["content"].value  # no decoder: the model's own
    assert pipeline.loaded_decoders == ("musicgen",)


def test_score_tab_handler_delivers_and_refuses_clearly(tmp_path):
    import json
    from pathlib import Path

    import soundfile as sf
    from PIL import Image

    from bench.video_scoring import SR, click_track, make_clip
    from demo.handlers import score_clip
    from demo.session import close_session

    pipeline = MuMuPipeline.from_profile("tiny", out_dir=tmp_path)
    clip = make_clip(tmp_path / "clip.mp4", 4.0, [2.16], speech=(0.5, 1.5))
    track = tmp_path / "beat.wav"
    sf.write(track, click_track(120.0, 4.0)[0], SR)
    picture, video, files, report, used, session = score_clip(pipeline, None, str(clip), str(track), "", "auto", 10,
                                                              True, -14, 0)
    assert Image.open(picture).size == (1200, 360)
    assert video.endswith(".mp4") and used == "2.16"
    assert [f.rsplit(".", 2)[-2:] for f in files] == [["cues", "json"], ["cues", "csv"], ["music", "wav"]]
    assert json.loads(Path(files[0]).read_text())["outputs"]["video"] == video
    # The cut is 0.16 s past the track's second downbeat: off before fitting, on it after (a 7.4 % slower bar).
    assert report["scores"] == {"before": {"bcs": 3.0, "bhs": 0.0}, "after": {"bcs": 2.0, "bhs": 1.0}}
    # Every file is in the session's folder and goes with the session; a second run keeps to the same session.
    assert all(Path(f).is_relative_to(session.conversation.out_dir) for f in [picture, video, *files])
    assert score_clip(pipeline, session, str(clip), str(track), "", "none", 10, True, -14, 0)[-1] is session
    close_session(session)
    assert not session.conversation.out_dir.exists() and not any(Path(f).exists() for f in [picture, video, *files])
    with pytest.raises(gr.Error, match="upload a video"):
        score_clip(pipeline, None, None, str(track), "", "auto", 10, True, -14, 0)
    with pytest.raises(gr.Error, match="upload a track, or describe"):
        score_clip(pipeline, None, str(clip), None, " ", "auto", 10, True, -14, 0)
    with pytest.raises(gr.Error, match="hit point 5 s is outside the clip"):
        score_clip(pipeline, None, str(clip), str(track), "", "1, 5", 10, True, -14, 0)


def test_clear_deletes_the_sessions_files_and_starts_over(tmp_path):
    from demo.handlers import clear_chat

    pipeline = MuMuPipeline.from_profile("tiny", out_dir=tmp_path)
    controls = ("always", 0.5, 0, False, 3.0, 0.0, 1.0, 25, "(none)", True)
    *_, session, _ = list(respond(pipeline, {"text": "music", "files": []}, [], None, *controls, None))[-1]
    folder = session.conversation.out_dir
    assert any(folder.rglob("*.wav"))
    history, box, state, tracks = clear_chat(session)
    assert (history, box, state) == ([], None, None)
    assert tracks.value == "(none)" and tracks.choices == [("(none)", "(none)")]
    assert not folder.exists()
    assert clear_chat(None)[:3] == ([], None, None)  # nothing to delete yet
