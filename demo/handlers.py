"""Event handlers: turn UI inputs into MuMuPipeline calls and pipeline replies into chat messages."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from demo.session import Session, close_session, new_session
from generation.config import SamplingSettings
from media.edits import EditPlan, parse_trim
from mumu.pipeline import ChatOptions, MuMuPipeline
from mumu.scheduler import Busy, TurnInProgress
from mumu.scoring import DuckSettings, ScoreSettings, compose_for_video, parse_hit_points, score_video
from mumu.timeline import timeline_image

NO_EDIT = "(none)"
MAKING_MUSIC = "_generating music..._"


def _files(pipeline: MuMuPipeline, message: dict[str, Any]) -> dict[str, str]:
    """Attached files by pipeline argument name; one per kind (the last one wins)."""
    chosen: dict[str, str] = {}
    for item in message.get("files") or []:
        path = item if isinstance(item, str) else item.get("path")
        chosen[pipeline.classify(path)] = path
    return chosen


def respond(
    pipeline: MuMuPipeline, message: dict[str, Any], history: list[dict[str, Any]], session: Session | None,
    music: str, duration: float, seed: float, random_seed: bool, guidance: float, temperature: float, top_p: float,
    steps: float, edit: str | None, fit_video: bool = True, decoder: str | None = None,
) -> Iterator[tuple[list[dict[str, Any]], Any, Session, Any]]:
    """Stream one assistant turn into the chat; errors become a visible message, the server keeps serving."""
    session = session or new_session(pipeline)
    text = (message or {}).get("text", "") or ""
    try:
        files = _files(pipeline, message or {})
        seed = random.randrange(2**31) if random_seed else int(seed)
        sampling = SamplingSettings(duration=float(duration), seed=seed, guidance_scale=float(guidance),
                                    steps=int(steps))
        options = ChatOptions(music=music, fit_video=bool(fit_video), temperature=float(temperature),
                              top_p=float(top_p), sampling=sampling, decoder=decoder or None)
        edit_id = edit if edit and edit != NO_EDIT else None
        mark = len(history)
        history = [*history, *({"role": "user", "content": {"path": p}} for p in files.values()),
                   {"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        stream = pipeline.stream(session.conversation, text, audio=files.get("audio"), image=files.get("image"),
                                 video=files.get("video"), edit=edit_id, options=options)
        for event in stream:
            if event["type"] == "text":
                history[-1]["content"] += event["delta"]
                yield history, gr.MultimodalTextbox(value=None, interactive=False), session, gr.skip()
            elif event["type"] == "status":
                history.append({"role": "assistant", "content": MAKING_MUSIC})
                yield history, gr.MultimodalTextbox(value=None, interactive=False), session, gr.skip()
            else:
                reply = event["reply"]
                history = [m for m in history if m["content"] != MAKING_MUSIC]
                history[-1]["content"] = reply.text or "(no text)"
                for note in reply.notes:
                    history.append({"role": "assistant", "content": f"_{note}_"})
                if reply.audio:
                    session.tracks.append(reply.track)
                    history.append({"role": "assistant", "content": gr.Audio(reply.audio, label=reply.track)})
                if reply.video:
                    history.append({"role": "assistant", "content": gr.Video(reply.video, label="your clip with it")})
                session.marks.append(mark)
                session.sent.append(message)
        yield history, gr.MultimodalTextbox(value=None, interactive=True), session, _track_choices(session)
    except (ValueError, OSError, Busy, TurnInProgress) as e:  # MediaError is a ValueError; busy: try again later
        raise gr.Error(str(e)) from e


def _track_choices(session: Session) -> Any:
    return gr.Dropdown(choices=[NO_EDIT, *session.tracks], value=NO_EDIT)


def undo(pipeline: MuMuPipeline, history: list[dict[str, Any]], session: Session | None):
    """Remove the last completed turn from the chat and from the conversation (its track is deleted)."""
    if session is None or not session.marks or not pipeline.undo(session.conversation):
        return history, session, gr.skip()
    known = {item.id for item in session.conversation.media}
    session.tracks = [t for t in session.tracks if t in known]
    session.sent.pop()
    return history[: session.marks.pop()], session, _track_choices(session)


def retry(pipeline: MuMuPipeline, history: list[dict[str, Any]], session: Session | None, *controls: Any):
    """Regenerate the last turn: undo it and send its message again (with the current settings)."""
    if session is None or not session.sent:
        raise gr.Error("nothing to retry yet")
    message = session.sent[-1]
    history, session, _ = undo(pipeline, history, session)
    yield from respond(pipeline, message, history, session, *controls)


def clear_chat(session: Session | None) -> tuple[list, None, None, Any]:
    """Start over: the session's files are deleted (a replaced gr.State value never reaches its delete_callback),
    then the chat, the input box, the session and the track choices are emptied."""
    close_session(session)
    return [], None, None, gr.Dropdown(choices=[NO_EDIT], value=NO_EDIT)


def unlock_input() -> Any:
    """Give the input box back after a stopped turn."""
    return gr.MultimodalTextbox(interactive=True)


def edit_exactly(
    pipeline: MuMuPipeline, history: list[dict[str, Any]], session: Session | None, track: str | None,
    tempo: float, semitones: float, trim: str, fade_in: float, fade_out: float, loop: float, loudness: float | None,
):
    """Apply exact edits (signal operations, no model) to a generated track; the result joins the chat."""
    if session is None or not track or track == NO_EDIT:
        raise gr.Error("choose a generated track to edit first")
    try:
        start, end = parse_trim(trim) if trim and trim.strip() else (0.0, None)
        plan = EditPlan(tempo=float(tempo), semitones=float(semitones), trim_start=start, trim_end=end,
                        fade_in=float(fade_in), fade_out=float(fade_out), loop=int(loop),
                        loudness_lufs=None if loudness is None else float(loudness))
        item = pipeline.edit_track(session.conversation, track, plan)
    except (ValueError, OSError) as e:
        raise gr.Error(str(e)) from e
    session.tracks.append(item.id)
    note = {"role": "assistant", "content": f"Exact edit of {track}: {item.id}"}
    history = [*history, note, {"role": "assistant", "content": gr.Audio(str(item.path), label=item.id)}]
    return history, session, _track_choices(session)


def score_clip(
    pipeline: MuMuPipeline, session: Session | None, video: str | None, music: str | None, prompt: str,
    hit_points: str, duck: float, keep_original: bool, loudness: float, seed: float,
) -> tuple[str, str, list[str], dict[str, Any], str, Session]:
    """The Score-a-video tab: fit an uploaded (or generated) track to the clip; returns the timeline picture, the
    scored video, the downloads (cue sheets and stem), the report, the hit points used (for editing) and the
    session, whose folder holds the files (deleted with it when the session ends)."""
    session = session or new_session(pipeline)
    if not video:
        raise gr.Error("upload a video to score")
    if not music and not (prompt or "").strip():
        raise gr.Error("upload a track, or describe the music for the model to make")
    try:
        settings = ScoreSettings(hit_points=parse_hit_points(hit_points or "auto"),
                                 duck=DuckSettings(depth_db=float(duck)), keep_original_audio=bool(keep_original),
                                 loudness_lufs=float(loudness)).validate()
        track = music or compose_for_video(pipeline, video, prompt, int(seed))
        # Each run writes into a folder of its own in the session's: nothing is shared between sessions.
        out = session.conversation.out_dir / f"score-{uuid.uuid4().hex[:12]}" / f"{Path(video).stem}-scored.mp4"
        result = score_video(video, track, out, settings, pipeline.config.limits)
    except (ValueError, OSError) as e:  # MediaError is a ValueError: bad input is the user's to fix
        raise gr.Error(str(e)) from e
    picture = out.with_name(f"{out.stem}.timeline.png")
    timeline_image(result).save(picture)
    report = result.report()
    used = ", ".join(f"{t:g}" for t in report["hit_points"]) or "none"
    files = [str(result.cue_json), str(result.cue_csv), str(result.stem)]
    summary = {"scores": report["scores"], "mix": report["mix"], "missed": report["music"]["after"]["missed"]}
    return str(picture), str(result.video), files, summary, used, session
