"""`python app.py --model DIR` serves a trained model: here a tiny published M2UGen checkpoint, converted."""

from __future__ import annotations

import pytest
import soundfile as sf
from gradio_client import Client

from app import main
from tests.converted import convert_tiny_published
from tests.serving import running_app


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_published(tmp_path_factory.mktemp("published"))


@pytest.mark.slow
def test_app_serves_a_converted_published_model(converted):
    with running_app("tiny", model=str(converted)) as (url, pipeline):  # --model wins over --profile
        assert pipeline.config.adapter.style == "m2ugen" and pipeline.config.pipeline.template == "m2ugen"
        client = Client(url, verbose=False)
        history, _, _ = client.predict({"text": "a calm piano piece", "files": []}, [], "always", 1.0, 0, False, 3,
                                       0, 1, 25, "(none)", api_name="/chat")
        parts = [part for m in history if m["role"] == "assistant" for part in m["content"]]
        (track,) = [p for p in parts if p.get("component") == "audio"]
        assert sf.info(track["value"]).samplerate == 8000  # the converted config's own (tiny) MusicGen


def test_app_refuses_a_model_it_cannot_find_in_one_line(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"error: no checkpoint directory {tmp_path / 'nowhere'}\n"


def test_a_space_asks_for_4bit_through_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MUMU_QUANTIZE", "4bit")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["--model", str(tmp_path)]) == 2  # refused before the model is even looked at
    assert capsys.readouterr().err == ("error: --quantize 4bit needs a CUDA GPU (bitsandbytes); this machine has "
                                       "none. On CPU, leave --quantize out\n")
