"""app.py: builds a profile and runs one real turn through the whole model."""

from app import main


def test_app_runs_a_turn_on_the_tiny_profile(capsys):
    assert main(["--profile", "tiny", "--text", "play [AUD0] jazz"]) == 0
    out = capsys.readouterr().out
    assert "llm.lora" in out
    assert "user: play [AUD0] jazz" in out
    assert "music conditioning for musicgen: encoder_hidden_states (1, 16, 32)" in out


def test_auto_profile_explains_its_fallback(capsys):
    assert main(["--profile", "auto", "--decoder", "audioldm2"]) == 0
    captured = capsys.readouterr()
    assert "full-profile weights not found locally" in captured.err
    assert "generated_prompt_embeds (1, 8, 16)" in captured.out
