"""A real browser (Debian's Chromium driven by Playwright) uses the demo: attach audio, send, get a player back."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.converted import convert_tiny_published
from tests.serving import running_app

CHROMIUM = shutil.which("chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="browser test needs playwright (see .ci/run)")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="browser test needs Debian's chromium")]
# Flags as the workplace probe uses them: no sandbox as root, and no background traffic on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module", params=["tiny", "converted"])
def url(request, tmp_path_factory):
    """The tiny profile, and a tiny published M2UGen checkpoint converted and served with --model."""
    model = str(convert_tiny_published(tmp_path_factory.mktemp("published"))) if request.param == "converted" else None
    with running_app("tiny", model=model) as (address, _):
        yield address


def test_attach_audio_send_and_find_a_player(url, tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, 0.3 * np.sin(2 * np.pi * 330 * np.arange(16000) / 16000), 16000)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#banner", timeout=30_000)
        page.get_by_text("Music settings").click()
        page.get_by_label("always").check()
        page.locator("input[type=file]").first.set_input_files(str(song))
        page.locator("textarea").first.fill("Make a calm piano piece in this style")
        page.locator("textarea").first.press("Enter")
        # The assistant's generated track, as a player inside a bot message (the user's own upload is in a user row).
        page.wait_for_selector("#chatbot .bot-row [data-testid^='waveform-track']", timeout=120_000)
        assert page.locator("#chatbot .user-row [data-testid^='waveform']").count() == 1
        assert "Make a calm piano piece" in page.locator("#chatbot .user-row").last.inner_text()
        shot = tmp_path / "demo.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("MUMU_SCREENSHOT_TO"):  # how the README's screenshot is made
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)


def test_score_a_video_tab(url, tmp_path):
    from bench.video_scoring import SR, click_track, make_clip

    clip = make_clip(tmp_path / "clip.mp4", 4.0, [2.16], speech=(0.5, 1.5), size=(160, 96))
    track = tmp_path / "beat.wav"
    sf.write(track, click_track(120.0, 4.0)[0], SR)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(url)
        page.wait_for_selector("#banner", timeout=30_000)
        page.get_by_role("tab", name="Score a video").click()
        page.locator("#score-video-in input[type=file]").set_input_files(str(clip))
        page.locator("#score-music-in input[type=file]").set_input_files(str(track))
        page.wait_for_selector("#score-music-in audio, #score-music-in [data-testid^='waveform']", timeout=30_000)
        page.locator("#score-run").click()
        page.wait_for_selector("#score-timeline img", timeout=120_000)  # the timeline picture is shown...
        page.wait_for_selector("#score-video-out video", timeout=30_000)  # ...and the scored clip offered
        assert page.locator("#score-timeline img").evaluate("img => img.naturalWidth") == 1200
        assert page.get_by_label("Hit points").input_value() == "2.16"  # the cuts, ready to edit
        shot = tmp_path / "score.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("MUMU_SCORE_SCREENSHOT_TO"):  # how the README's Score-a-video screenshot is made
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
