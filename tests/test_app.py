"""app.py: builds a profile and runs one real turn through the whole pipeline."""

import soundfile as sf

from app import main


def test_app_runs_a_turn_on_the_tiny_profile(capsys, tmp_path):
    assert main(["--profile", "tiny", "--text", "play [AUD0] jazz", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "llm.lora" in out and "decoder.audio_codec" in out
    assert "user: play [AUD0] jazz" in out
    path = out.split("music: ")[1].split(" (")[0]
    assert path.startswith(str(tmp_path))
    assert sf.info(path).duration == 2.0


def test_auto_profile_explains_its_fallback(capsys, tmp_path):
    assert main(["--profile", "auto", "--decoder", "audioldm2", "--out-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "full-profile weights not found locally" in captured.err
    assert "decoder.unet" in captured.out and "(16000 Hz)" in captured.out
