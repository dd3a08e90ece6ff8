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
