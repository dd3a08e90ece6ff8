"""MuMuPipeline: the one public entry for chatting — conversations with media memory, music on demand, caches.

A turn is a short list of named stages (`chat`): check the request, attach media, build the prompt, generate text,
make music, commit the turn. Concurrent turns' text is decoded as one batch by the turn scheduler, and their music is
made as one batch per decoder and settings; other model work is serialised by one lock; conversations are
independent, with one turn in flight each.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from choices import check_choice
from generation.config import SamplingSettings
from generation.interface import Conditioning, DecodedAudio, EditMode, EditSource, MusicDecoder
from media.audio_io import load_audio_native
from media.audio_out import WrittenAudio, write_audio
from media.edit_file import edit_file
from media.edits import EditPlan
from media.errors import MediaError
from media.files import MediaKind, accepted, detect_kind
from media.mux import mux_music
from media.video_analysis import analyze_video
from media.video_io import video_duration
from mumu.builder import build_model
from mumu.checkpoint import from_pretrained as load_checkpoint
from mumu.conversation import Conversation, MediaItem, Modality, PendingTurn
from mumu.decoder_pool import DecoderPool, MusicPlan, build_seeded_decoder
from mumu.decoding import Generated, GenerationSettings, MusicMode
from mumu.feature_cache import FeatureCache, encode_file, file_digest
from mumu.modeling import MediaFeatures, MuMuModel
from mumu.prefix_cache import PrefixCache
from mumu.profiles import get_profile
from mumu.projector import check_streams
from mumu.prompting import Message, fit_context
from mumu.scheduler import TurnScheduler
from mumu.scoring import RATE as SCORE_RATE
from mumu.scoring import fit_for_video
from mumu.streaming import Cancelled, TextStream, byte_fallback_tokens

KIND_TO_MODALITY: dict[MediaKind, Modality] = {"audio": "music", "image": "image", "video": "video"}
TextCallback = Callable[[str], None]
"""Receives each new piece of the reply's text as it is generated."""
Stage = Literal["music"]
StageCallback = Callable[[Stage], None]
"""Told when a turn enters a long stage ("music": the decoder started)."""


@dataclass
class ChatOptions:
    """Per-turn controls: music mode, text sampling, and the decoder's settings (duration, seed, guidance...).

    fit_video: with a video active, the music lasts as long as the clip (capped at the decoder's maximum) and is
    fitted to it: downbeats on its cuts, its exact length, a musical ending (mumu.scoring.fit_for_video).
    decoder: which music decoder (one of MuMuPipeline.decoder_choices); None = the model's own. Any other one runs
    in caption mode, since the output projector was trained for the model's own decoder only.
    conditioning: "embeddings" or "caption" (see PipelineConfig.conditioning); None = the config's.
    """

    music: MusicMode = "auto"
    fit_video: bool = False
    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    decoder: str | None = None
    conditioning: str | None = None


@dataclass
class Reply:
    """The assistant's turn: text, the generated track (path and id) if any, and where the time went.

    info: how the track was made (decoder kind, conditioning mode, the caption in caption mode, the decoder's own
    report); empty when no music was made.
    """

    text: str
    audio: str | None = None
    sample_rate: int | None = None
    track: str | None = None
    video: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    dropped_turns: int = 0
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class MuMuPipeline:
    """One shared model and decoder pool serving many conversations; model work is serialised by a lock."""

    def __init__(self, model: MuMuModel, decoder: MusicDecoder, out_dir: str | Path = "outputs") -> None:
        check_streams(model.config.projector, decoder.streams, model.config.decoder.kind)
        self.model, self.decoder = model, decoder
        self.config = model.config
        self.out_dir = Path(out_dir)
        self.features = FeatureCache(self.config.pipeline.feature_cache_size)
        self.encoder_runs = {"music": 0, "image": 0, "video": 0}
        self.decoders = DecoderPool(self.config, decoder)
        self._lock = threading.RLock()
        cfg = self.config.pipeline
        self.scheduler = TurnScheduler(model, self._lock, cfg.batch_window_ms / 1000, cfg.max_batch, cfg.max_queue,
                                       continuous=cfg.continuous_batching,
                                       prefix_cache=PrefixCache(cfg.prefix_cache_tokens)
                                       if cfg.prefix_cache_tokens else None)
        self._byte_tokens = byte_fallback_tokens(model.tokenizer)

    @classmethod
    def from_profile(cls, name: str, decoder: str = "musicgen", device: str = "cpu", out_dir: str | Path = "outputs"):
        """Build from a named profile (tiny or full); random-init parts are seeded, so every process builds the same."""
        config = get_profile(name, decoder=decoder)
        return cls(build_model(config, device=device), build_seeded_decoder(config, config.decoder.kind, device),
                   out_dir)

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, device: str = "cpu", out_dir: str | Path = "outputs"):
        """Build from a MuMu checkpoint directory or Hub id (or a published M2UGen id, converted once)."""
        model = load_checkpoint(path_or_id, device=device)
        return cls(model, build_seeded_decoder(model.config, model.config.decoder.kind, device), out_dir)

    @property
    def decoder_choices(self) -> tuple[str, ...]:
        """Decoder kinds a turn may pick: the model's own first (its trained projector), then the caption-mode ones."""
        return self.decoders.choices

    @property
    def loaded_decoders(self) -> tuple[str, ...]:
        """Decoder kinds built so far (the model's own always); another kind loads in the turn that first uses it."""
        return self.decoders.loaded

    def edit_mode(self, decoder: str | None = None) -> EditMode | None:
        """How a decoder kind (None: the model's own) edits a track: "melody", "continue", or None (it cannot)."""
        return self.decoders.edit_mode(decoder)

    def decoder_for(self, kind: str | None = None) -> MusicDecoder:
        """The decoder of a kind (None: the model's own); another kind is built on first use, then kept."""
        return self.decoders.get(kind)

    def new_conversation(self) -> Conversation:
        """A fresh conversation with its own output folder."""
        conv_id = uuid.uuid4().hex[:12]
        return Conversation(id=conv_id, out_dir=self.out_dir / conv_id)

    def classify(self, path: str | Path) -> MediaKind:
        """Whether an upload is audio, an image or a video (by extension, else by content).

        Raises:
            MediaError: the file is missing, empty, or not a recognised audio, image or video file.
        """
        return detect_kind(path)

    # Media ---------------------------------------------------------------------------------------------------
    def features_for(self, item: MediaItem) -> torch.Tensor:
        """Encoder features of an item, from the content-hash cache when this file was seen before."""
        key = (item.modality, item.digest)
        cached = self.features.get(key)
        if cached is not None:
            return cached
        with self._lock:
            features = encode_file(self.model, item.modality, item.path, self.config.limits)
            self.encoder_runs[item.modality] += 1
        self.features.put(key, features)
        return features

    # Chat ----------------------------------------------------------------------------------------------------
    def chat(
        self, conv: Conversation, text: str, *, audio: str | Path | None = None, image: str | Path | None = None,
        video: str | Path | None = None, use: dict[str, str] | None = None, edit: str | None = None,
        options: ChatOptions | None = None, on_text: TextCallback | None = None, stop: threading.Event | None = None,
        on_stage: StageCallback | None = None,
    ) -> Reply:
        """Answer one user turn; the conversation changes only when the turn succeeds.

        Turns of other conversations running at the same time share the text decoding batch and, with the same
        decoder and settings, the music batch (mumu.scheduler).

        Args:
            conv: the conversation (from `new_conversation`).
            text: the user's message.
            audio, image, video: files attached this turn (each becomes the active item of its modality).
            use: modality -> id of an earlier item to make active instead of the latest.
            edit: id of a track to edit (the source of the new music).
            options: music mode, text sampling, decoder and its settings.
            on_text: receives the reply's text as it is generated.
            stop: set it to cancel the turn (raises Cancelled; nothing is kept).
            on_stage: told when music generation starts.

        Raises:
            MediaError: an attached file is unusable or of another kind than its argument.
            ValueError: the message, options, `use` or `edit` are invalid (the message names the value).
            Cancelled: `stop` was set.
            Busy: too many turns are waiting (try again in a moment).
            TurnInProgress: this conversation has a turn in flight already.
        """
        with self.scheduler.turn(conv.id):
            return self._turn(conv, text, audio, image, video, use, edit, options, on_text, stop, on_stage)

    def _turn(self, conv: Conversation, text: str, audio: str | Path | None, image: str | Path | None,
              video: str | Path | None, use: dict[str, str] | None, edit: str | None, options: ChatOptions | None,
              on_text: TextCallback | None, stop: threading.Event | None, on_stage: StageCallback | None) -> Reply:
        options = options or ChatOptions()
        start = time.perf_counter()
        self._check_request(conv, text, options)
        plan = self.decoders.plan(options.decoder, options.conditioning, edit=edit is not None)
        turn = self._attach_media(conv, audio, image, video, use, edit)
        media = self._media_features(conv, turn)
        reply = Reply(text="", timings={"encode": time.perf_counter() - start})
        messages = [*conv.messages, Message("user", text)]
        prompt = self._build_prompt(messages, options, reply)
        result = self._generate_text(prompt, media, options, on_text, stop, reply)
        try:
            if result.audio_hidden is not None:
                if on_stage is not None:
                    on_stage("music")
                self._make_music(conv, turn, reply, result.audio_hidden, options, plan, text, stop)
            if stop is not None and stop.is_set():
                raise Cancelled("the turn was stopped")
        except BaseException:
            turn.discard()
            raise
        self._commit(conv, turn, reply, plan, messages)
        reply.timings["total"] = time.perf_counter() - start
        return reply

    def _check_request(self, conv: Conversation, text: str, options: ChatOptions) -> None:
        cfg = self.config.pipeline
        if not text.strip():
            raise ValueError("the message is empty")
        if len(text) > cfg.max_text_chars:
            raise ValueError(f"the message is {len(text)} characters, over the {cfg.max_text_chars} limit")
        if conv.turns >= cfg.max_turns:
            raise ValueError(f"the conversation reached its {cfg.max_turns}-turn limit; start a new one")
        check_choice(options.music, MusicMode, "music")
        if not 0 <= options.temperature <= 5 or not 0 < options.top_p <= 1:
            raise ValueError("temperature must be in [0, 5] (0 = greedy) and top_p in (0, 1]")
        options.sampling.validate(self.config.decoder.max_duration)

    def _attach_media(self, conv: Conversation, audio: str | Path | None, image: str | Path | None,
                      video: str | Path | None, use: dict[str, str] | None, edit: str | None) -> PendingTurn:
        """Check and encode this turn's uploads, then pick the active items (nothing is added to `conv` yet)."""
        attached = ((audio, "music"), (image, "image"), (video, "video"))
        uploads = tuple(self._upload(conv, Path(path), modality) for path, modality in attached if path is not None)
        return conv.begin(uploads, use, edit)

    def _upload(self, conv: Conversation, path: Path, expected: Modality) -> MediaItem:
        kind = self.classify(path)
        if KIND_TO_MODALITY[kind] != expected:
            wanted = next(k for k, m in KIND_TO_MODALITY.items() if m == expected)
            raise MediaError(path, f"is an {kind} file but was attached as {wanted}", accepted=accepted(wanted))
        item = MediaItem(conv.new_id(expected), expected, path, file_digest(path))
        self.features_for(item)  # decodes and checks the file before the conversation changes
        return item

    def _media_features(self, conv: Conversation, turn: PendingTurn) -> MediaFeatures:
        active = {m: conv.active_item(turn, m) for m in ("music", "image", "video")}
        return MediaFeatures(**{m: [None if item is None else self.features_for(item)] for m, item in active.items()})

    def _build_prompt(self, messages: list[Message], options: ChatOptions, reply: Reply) -> list[int]:
        """The prompt for the most recent turns that fit the context (the reply notes any dropped ones)."""
        cfg = self.config.pipeline
        max_new = options.max_new_tokens or cfg.max_new_tokens
        prompt, dropped = fit_context(self.model.tokenizer, self.model.ids, messages,
                                      cfg.max_context_tokens - max_new, cfg.template, cfg.system)
        reply.dropped_turns = dropped
        if dropped:
            reply.notes.append(f"the conversation outgrew the context: the oldest {dropped} messages were left out")
        return prompt

    def _generate_text(self, prompt: list[int], media: MediaFeatures, options: ChatOptions,
                       on_text: TextCallback | None, stop: threading.Event | None, reply: Reply) -> Generated:
        settings = GenerationSettings(max_new_tokens=options.max_new_tokens or self.config.pipeline.max_new_tokens,
                                      temperature=options.temperature, top_p=options.top_p, music=options.music,
                                      seed=options.sampling.seed)
        tick = time.perf_counter()
        streamer = TextStream(self.model, on_text, stop, self._byte_tokens)
        result = self.scheduler.submit(prompt, media, settings, on_token=streamer, stop=stop)
        streamer.flush()
        reply.timings["llm"] = time.perf_counter() - tick
        reply.text = result.text
        return result

    def _make_music(self, conv: Conversation, turn: PendingTurn, reply: Reply, hidden: torch.Tensor,
                    options: ChatOptions, plan: MusicPlan, prompt_text: str, stop: threading.Event | None) -> None:
        """Decode music for the turn (batched with other turns' by the scheduler), write it, and mux it under the
        active video when there is one."""
        video = conv.active_item(turn, "video")
        tick = time.perf_counter()
        first_use = plan.kind not in self.decoders.loaded
        decoder = self.decoders.get(plan.kind)
        if first_use:
            reply.timings["decoder_load"] = time.perf_counter() - tick
        settings, source = self._music_settings(decoder, options, video, turn.source)
        cond = self._conditioning(conv, reply, hidden, plan, prompt_text)
        tick = time.perf_counter()
        audio = self.scheduler.make_music(decoder, cond, settings, source, stop)
        reply.timings["decoder"] = time.perf_counter() - tick
        reply.notes.extend(audio.info.get("notes", []))
        if video is not None and options.fit_video:
            audio = self._fit_to_video(video, audio, reply)
        written = self._write_track(conv, turn, reply, audio, settings.seed, plan, prompt_text)
        level_note = written.levelling.note() if written.levelling is not None else None
        if level_note:
            reply.notes.append(level_note)
        reply.info = {**reply.info, "decoder": plan.kind, "conditioning": plan.mode, **({"caption": cond.caption}
                      if plan.mode == "caption" else {}), "decoder_info": audio.info}
        if video is not None:
            tick = time.perf_counter()
            # The clip carries exactly the delivered (levelled) track.
            reply.video = str(mux_music(video.path, written.waveform, written.sample_rate,
                                        written.path.with_suffix(".mp4")))
            reply.timings["mux"] = time.perf_counter() - tick

    def _fit_to_video(self, video: MediaItem, audio: DecodedAudio, reply: Reply) -> DecodedAudio:
        """The track fitted to the clip (downbeats on its cuts, its exact length, a musical ending)."""
        tick = time.perf_counter()
        clip = analyze_video(video.path, self.config.limits, speech=False)  # the chat replaces the clip's audio
        scored = fit_for_video(clip, audio.waveform, audio.sample_rate)
        reply.info["score"] = {"cuts": clip.cuts, "hits": list(scored.fitted.hits), "missed": scored.fitted.missed,
                               "ending": scored.fitted.ending, "scores": scored.scores}
        reply.timings["fit"] = time.perf_counter() - tick
        return replace(audio, waveform=scored.fitted.waveform, sample_rate=SCORE_RATE)

    def _music_settings(self, decoder: MusicDecoder, options: ChatOptions, video: MediaItem | None,
                        source_item: MediaItem | None) -> tuple[SamplingSettings, EditSource | None]:
        """The decoder's settings for this turn (lasting as long as the video when asked) and the edit's source."""
        settings = options.sampling
        if video is not None and options.fit_video:
            seconds = min(video_duration(video.path), self.config.decoder.max_duration)
            settings = replace(settings, duration=round(seconds, 3))
        if source_item is None:
            return settings, None
        wav, rate = load_audio_native(source_item.path, self.config.limits)
        edit_mode = self.decoders.edit_mode(decoder.config.kind)
        if edit_mode == "continue":  # the requested duration is the new music; the source comes first
            settings = replace(settings, duration=len(wav) / rate + settings.duration)
            settings.validate(decoder.config.max_duration)
        return settings, EditSource(wav, rate, edit_mode)

    def _conditioning(self, conv: Conversation, reply: Reply, hidden: torch.Tensor, plan: MusicPlan,
                      prompt_text: str) -> Conditioning:
        """The projector's prediction (embeddings mode) or the reply's text (caption mode)."""
        # The reply text never holds the [AUD] tokens (decoding drops them); an empty reply falls back to what the
        # user asked for, so the decoder always has something to follow (and to rank its candidates by).
        text = reply.text.strip() or prompt_text.strip()
        if plan.mode == "embeddings":
            tick = time.perf_counter()
            with self._lock:
                out = self.model.project(hidden[None].to(self.model.device))
            reply.timings["projector"] = time.perf_counter() - tick
            return Conditioning(embeds={k: v.detach() for k, v in out.embeds.items()},
                                masks={k: v.detach() for k, v in out.masks.items()}, ranking_text=text)
        if not plan.own and plan.kind not in conv.told_caption_mode:
            reply.notes.append(f"{plan.kind} is not the decoder this model's projector was trained for "
                               f"({self.decoders.own_kind}), so it made the music from the reply's text "
                               "through its own text encoder (caption mode)")
        return Conditioning(caption=text)

    def _write_track(self, conv: Conversation, turn: PendingTurn, reply: Reply, audio: DecodedAudio, seed: int | None,
                     plan: MusicPlan, prompt_text: str) -> WrittenAudio:
        tick = time.perf_counter()
        conv.out_dir.mkdir(parents=True, exist_ok=True)
        item_id = conv.new_id("music", generated=True)
        model_name = f"mumu-{self.config.profile}/{audio.info.get('decoder', plan.kind)}"
        written = write_audio(conv.out_dir / f"{item_id}.wav", audio.waveform, audio.sample_rate,
                              loudness_lufs=self.config.pipeline.output_lufs,
                              metadata={"prompt": prompt_text, "seed": seed, "model": model_name,
                                        "conditioning": plan.mode})
        turn.track = MediaItem(item_id, "music", written.path, file_digest(written.path), generated=True)
        reply.audio, reply.sample_rate, reply.track = str(written.path), audio.sample_rate, item_id
        reply.timings["write"] = time.perf_counter() - tick
        return written

    def _commit(self, conv: Conversation, turn: PendingTurn, reply: Reply, plan: MusicPlan,
                messages: list[Message]) -> None:
        if reply.audio and not plan.own:
            conv.told_caption_mode.add(plan.kind)
        conv.commit(turn, [*messages, Message("assistant", reply.text, music=reply.audio is not None)])

    # Outside a chat turn ---------------------------------------------------------------------------------------
    def edit_track(self, conv: Conversation, media_id: str, plan: EditPlan) -> MediaItem:
        """Apply exact signal edits to a track of the conversation; the result is a new track of its own.

        Raises:
            ValueError: no such item, it is not a track, or the plan does not fit the track.
        """
        source = conv.item(media_id)
        if source.modality != "music":
            raise ValueError(f"{media_id!r} is {source.modality}, not a track")
        item_id = conv.new_id("music", generated=True)
        conv.out_dir.mkdir(parents=True, exist_ok=True)
        path = edit_file(source.path, plan, conv.out_dir / f"{item_id}.wav", limits=self.config.limits,
                         metadata={"source": source.id}).path
        item = MediaItem(item_id, "music", path, file_digest(path), generated=True)
        conv.add(item)
        return item

    def undo(self, conv: Conversation) -> bool:
        """Forget the last turn: its messages, the media it attached and the track it generated (file deleted)."""
        return conv.undo()

    def stream(self, conv: Conversation, text: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield {'type': 'text', 'delta': str} as text is produced, {'type': 'status', 'stage': 'music'} when the
        music decoder starts, then {'type': 'reply', 'reply': Reply}.

        Closing the generator early (a Stop button) cancels the turn: the conversation stays as it was.
        """
        events: queue.Queue = queue.Queue()
        outcome: dict[str, Any] = {}
        stop = threading.Event()

        def run() -> None:
            try:
                outcome["reply"] = self.chat(
                    conv, text, on_text=lambda delta: events.put({"type": "text", "delta": delta}), stop=stop,
                    on_stage=lambda stage: events.put({"type": "status", "stage": stage}), **kwargs)
            except Exception as e:  # noqa: BLE001 -- not swallowed: re-raised in the caller's thread below
                outcome["error"] = e
            finally:
                events.put(None)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            while (event := events.get()) is not None:
                yield event
        finally:
            if worker.is_alive():
                stop.set()
        worker.join()
        if "error" in outcome:
            raise outcome["error"]
        yield {"type": "reply", "reply": outcome["reply"]}
