"""The Gradio Blocks layout: chat with inline media and tracks, a multimodal input box, creator controls."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from demo.gpu import SCORE_SECONDS, chat_concurrency, on_gpu, turn_seconds
from demo.handlers import NO_EDIT, clear_chat, edit_exactly, respond, retry, score_clip, undo, unlock_input
from demo.session import close_session
from mumu.decoding import MUSIC_MODES
from mumu.pipeline import MuMuPipeline

SESSION_TTL_SECONDS = 3600
EXAMPLES = Path(__file__).parent / "examples"
EXAMPLE_MESSAGES = [
    {"text": "What instruments do you hear, and what is the mood?", "files": [str(EXAMPLES / "piano.wav")]},
    {"text": "Make a slower, dreamier version of this.", "files": [str(EXAMPLES / "piano.wav")]},
    {"text": "Compose music for this photo.", "files": [str(EXAMPLES / "sunset.png")]},
    {"text": "Score this clip with upbeat music.", "files": [str(EXAMPLES / "clip.mp4")]},
]


def decoder_label(pipeline: MuMuPipeline, kind: str) -> str:
    """How the decoder dropdown names a kind: the model's own uses its trained projector, the others a caption."""
    return f"{kind} ({'trained projector' if kind == pipeline.config.decoder.kind else 'caption mode'})"


def steps_slider(kind: str) -> Any:
    """The AudioLDM2 steps slider, usable only while AudioLDM2 is the chosen decoder."""
    return gr.Slider(interactive=kind == "audioldm2")


def _bound(handler: Callable[..., Any], pipeline: MuMuPipeline) -> Callable[..., Any]:
    # A named function, not a functools.partial: spaces.GPU and Gradio's API description read its metadata.
    def run(*args: Any) -> Any:
        yield from handler(pipeline, *args)

    run.__name__ = handler.__name__
    return run


def _score_tab(pipeline: MuMuPipeline, session: gr.State) -> None:
    """Upload a clip, upload or describe music, edit hit points and ducking; get the scored clip and its timeline
    (written in the session's folder, deleted with it)."""
    gr.Markdown("Music cut to the picture: downbeats on the scene cuts (or your hit points), the clip's exact "
                "length with a musical ending, ducked under speech, levelled and muxed. No model is needed to fit "
                "an uploaded track.")
    with gr.Row():
        clip = gr.Video(label="Clip", sources=["upload"], elem_id="score-video-in")
        with gr.Column():
            track = gr.Audio(label="Music (upload; or leave empty and describe it)", type="filepath",
                             sources=["upload"], elem_id="score-music-in")
            prompt = gr.Textbox(label="Describe the music (the model makes it, as long as the clip)")
    with gr.Row():
        hits = gr.Textbox("auto", label="Hit points", info="auto = the scene cuts, none, or seconds: 1.5, 4, 7.25")
        duck = gr.Slider(0, 30, value=12, step=1, label="Duck under speech (dB)")
        keep = gr.Checkbox(True, label="Keep the clip's own audio")
        loudness = gr.Number(-14, label="Loudness (LUFS)")
        seed = gr.Number(0, precision=0, minimum=0, label="Seed")
    run = gr.Button("Score it", variant="primary", elem_id="score-run")
    timeline = gr.Image(label="Timeline: waveform, speech, cuts, hit points, beats before / after fitting",
                        type="filepath", elem_id="score-timeline")
    with gr.Row():
        scored = gr.Video(label="Scored clip", elem_id="score-video-out")
        with gr.Column():
            files = gr.File(label="Cue sheet (JSON, CSV) and music stem", file_count="multiple")
            report = gr.JSON(label="Beat alignment (BHS / BCS before and after) and loudness")

    def score(*args: Any) -> Any:
        return score_clip(pipeline, *args)

    run.click(on_gpu(score, SCORE_SECONDS), [session, clip, track, prompt, hits, duck, keep, loudness, seed],
              [timeline, scored, files, report, hits, session], api_name="score_video", concurrency_limit=1)


def build_demo(pipeline: MuMuPipeline, banner: str | None = None) -> gr.Blocks:
    """The whole UI around one shared pipeline; every piece of user state is per session."""
    limits, own = pipeline.config.decoder, pipeline.config.decoder.kind
    with gr.Blocks(title="MuMu-LLaMA music assistant", delete_cache=(600, SESSION_TTL_SECONDS)) as demo:
        gr.Markdown("## MuMu-LLaMA: chat about music, attach audio / images / video, get music back")
        if banner:
            gr.Markdown(f"**Note:** {banner}", elem_id="banner")
        session = gr.State(None, time_to_live=SESSION_TTL_SECONDS, delete_callback=close_session)
        with gr.Tab("Chat"):
            chat = gr.Chatbot(label="Conversation", height=520, elem_id="chatbot")
            box = gr.MultimodalTextbox(
                file_types=["audio", "image", "video"], file_count="multiple", sources=["upload", "microphone"],
                show_label=False,
                placeholder="Ask about the music, or ask for music (attach a track, photo or clip)...", autofocus=True,
            )
            with gr.Accordion("Music settings", open=False):
                with gr.Row():
                    music = gr.Radio(list(MUSIC_MODES), value="auto", label="Music")
                    decoder = gr.Dropdown(
                        [(decoder_label(pipeline, kind), kind) for kind in pipeline.decoder_choices], value=own,
                        label="Decoder", info=f"{own} is conditioned by the model's trained projector; the others make "
                                              "music from the reply's text (caption mode) and load on first use")
                    edit = gr.Dropdown([NO_EDIT], value=NO_EDIT, label="Edit a generated track")
                with gr.Row():
                    duration = gr.Slider(1, limits.max_duration, value=10, step=0.5, label="Duration (s)")
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                    random_seed = gr.Checkbox(False, label="Random seed")
                    fit_video = gr.Checkbox(True, label="Match a video's length")
                with gr.Row():
                    guidance = gr.Slider(1, 10, value=3, step=0.5, label="Guidance")
                    temperature = gr.Slider(0, 2, value=0, step=0.05, label="Text temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Text top-p")
                    steps = gr.Slider(5, 200, value=25, step=1, label="AudioLDM2 steps", interactive=own == "audioldm2",
                                      info="diffusion steps; used only when the decoder is audioldm2")
            with gr.Accordion("Exact edits of the chosen track (no model: tempo, pitch, trim, fades, loop, loudness)",
                              open=False):
                with gr.Row():
                    tempo = gr.Slider(0.5, 2, value=1, step=0.05, label="Tempo x")
                    semitones = gr.Slider(-12, 12, value=0, step=1, label="Semitones")
                    trim = gr.Textbox(label="Trim START:END (s or m:ss)", placeholder="e.g. 0:8")
                with gr.Row():
                    fade_in = gr.Slider(0, 10, value=0, step=0.1, label="Fade in (s)")
                    fade_out = gr.Slider(0, 10, value=0, step=0.1, label="Fade out (s)")
                    loop = gr.Slider(1, 16, value=1, step=1, label="Loop x")
                    loudness = gr.Number(None, label="Loudness (LUFS, empty = keep)")
                apply_edit = gr.Button("Apply exact edits")
            gr.Examples([[m] for m in EXAMPLE_MESSAGES], inputs=[box], label="Try one (fills the input box)")
            with gr.Row():
                stop_button = gr.Button("Stop", variant="stop")
                retry_button = gr.Button("Retry")
                undo_button = gr.Button("Undo")
                clear_button = gr.Button("Clear")  # a cleared chat starts a new conversation
        with gr.Tab("Score a video"):
            _score_tab(pipeline, session)
        # New controls go last, so API callers passing the earlier ones positionally keep working.
        controls = [music, duration, seed, random_seed, guidance, temperature, top_p, steps, edit, fit_video, decoder]
        outputs = [chat, box, session, edit]
        decoder.change(steps_slider, decoder, steps, api_name=False, queue=False)

        # ZeroGPU reserves the GPU per call for as long as the requested music needs (spaces.GPU calls these with
        # the handler's own arguments).
        def chat_seconds(message: Any, history: Any, state: Any, *args: Any) -> int:
            return turn_seconds(pipeline, message, state, *args)

        def retry_seconds(history: Any, state: Any, *args: Any) -> int:
            return turn_seconds(pipeline, state.sent[-1] if state is not None and state.sent else None, state, *args)

        # Chat and retry share one concurrency group: concurrent turns reach the turn scheduler together.
        concurrency = chat_concurrency(pipeline)
        sent = box.submit(on_gpu(_bound(respond, pipeline), chat_seconds), [box, chat, session, *controls], outputs,
                          api_name="chat", concurrency_limit=concurrency, concurrency_id="turns")
        again = retry_button.click(on_gpu(_bound(retry, pipeline), retry_seconds), [chat, session, *controls],
                                   outputs, api_name="retry", concurrency_limit=concurrency, concurrency_id="turns")
        undo_button.click(partial(undo, pipeline), [chat, session], [chat, session, edit], api_name="undo")
        apply_edit.click(partial(edit_exactly, pipeline),
                         [chat, session, edit, tempo, semitones, trim, fade_in, fade_out, loop, loudness],
                         [chat, session, edit], api_name="edit")
        # Cancelling closes the handler's generator, which stops the turn inside the pipeline as well.
        stop_button.click(unlock_input, None, box, cancels=[sent, again], api_name=False)
        clear_button.click(clear_chat, session, [chat, box, session, edit], cancels=[sent, again], api_name="clear")
    return demo
