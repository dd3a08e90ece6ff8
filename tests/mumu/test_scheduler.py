"""The turn scheduler: concurrent turns decode and make music as batches, and get exactly what each gets alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from generation.config import SamplingSettings
from mumu.config import PipelineConfig
from mumu.decoding import GenerationSettings
from mumu.modeling import MediaFeatures
from mumu.pipeline import ChatOptions, MuMuPipeline
from mumu.scheduler import Busy, TurnInProgress
from mumu.streaming import Cancelled
from tests.mumu.conftest import media_for, open_gates, prompt_ids

SR = 24000


@pytest.fixture
def pipeline(tmp_path):
    pipe = MuMuPipeline.from_profile("tiny", out_dir=tmp_path / "out")
    open_gates(pipe.model, 0.5)  # attached media visibly change the replies
    return pipe


@pytest.fixture
def media(tmp_path):
    rng = np.random.default_rng(0)
    song, photo = tmp_path / "song.wav", tmp_path / "photo.png"
    sf.write(song, 0.3 * np.sin(2 * np.pi * 330 * np.arange(SR) / SR), SR)
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(photo)
    return {"audio": song, "image": photo}


def _turns(media):
    """Four different turns: greedy text, seeded sampling, media attached, music made from an attached song."""
    def options(music="never", **kw):
        return ChatOptions(music=music, max_new_tokens=kw.pop("tokens", 10),
                           sampling=SamplingSettings(duration=0.5, seed=3), **kw)

    return [
        ("What is this?", {}, options()),
        ("Describe the mood of a rainy afternoon in detail", {},
         options(temperature=1.0, top_p=0.9, tokens=14)),
        ("Tell me about these", {"audio": media["audio"], "image": media["image"]}, options()),
        ("make music like this", {"audio": media["audio"]}, options("always", tokens=8)),
    ]


def _run(pipeline, turn, stop_after=None, fail_after=None, stop_at_music=False):
    """One turn in a fresh conversation: (reply or the error, the streamed text, the waveform if any)."""
    text, files, options = turn
    conv = pipeline.new_conversation()
    streamed = []
    stop = threading.Event()

    def on_stage(stage):
        if stop_at_music and stage == "music":
            stop.set()

    def on_text(delta):
        streamed.append(delta)
        if stop_after is not None and len(streamed) >= stop_after:
            stop.set()
        if fail_after is not None and len(streamed) >= fail_after:
            raise RuntimeError("the client went away")

    try:
        reply = pipeline.chat(conv, text, options=options, on_text=on_text, stop=stop, on_stage=on_stage, **files)
    except (Cancelled, RuntimeError) as e:
        return e, "".join(streamed), None, conv
    wave = sf.read(reply.audio)[0] if reply.audio else None
    return reply, "".join(streamed), wave, conv


def _concurrently(pipeline, turns, per_turn=None):
    """Run the turns at once (one thread each); the scheduler waits until all of them are queued."""
    pipeline.scheduler.window_s, pipeline.scheduler.max_batch = 10.0, len(turns)
    return _concurrently_with_window(pipeline, turns, per_turn)


def _concurrently_with_window(pipeline, turns, per_turn=None):
    """Run the turns at once (one thread each) with the scheduler's window and batch limit as they are."""
    results = [None] * len(turns)

    def work(i):
        results[i] = _run(pipeline, turns[i], **(per_turn or {}).get(i, {}))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(turns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _same(alone, together):
    reply, streamed, wave, _ = together
    assert reply.text == alone[0].text and streamed == alone[1] == reply.text
    assert (wave is None) == (alone[2] is None)
    if wave is not None:
        assert np.array_equal(wave, alone[2])  # bit for bit


def test_concurrent_turns_equal_the_same_turns_alone(pipeline, media):
    turns = _turns(media)
    alone = [_run(pipeline, turn) for turn in turns]
    assert list(pipeline.scheduler.text.batch_sizes) == [1, 1, 1, 1]
    assert alone[3][2] is not None and alone[2][0].text != alone[0][0].text
    together = _concurrently(pipeline, turns)
    assert list(pipeline.scheduler.text.batch_sizes)[4:] == [4]  # one batch: the four rows decoded together
    for a, t in zip(alone, together, strict=True):
        _same(a, t)


def test_a_stopped_or_failing_row_leaves_the_others_intact(pipeline, media):
    turns = _turns(media)[:3]
    alone = [_run(pipeline, turn) for turn in turns]
    together = _concurrently(pipeline, turns, {0: {"stop_after": 1}, 1: {"fail_after": 2}})
    assert list(pipeline.scheduler.text.batch_sizes)[3:] == [3]
    stopped, failed = together[0], together[1]
    assert isinstance(stopped[0], Cancelled) and stopped[3].messages == [] and stopped[3].turns == 0
    assert isinstance(failed[0], RuntimeError) and "went away" in str(failed[0]) and failed[3].messages == []
    _same(alone[2], together[2])


def test_a_row_that_breaks_the_batch_fails_alone(pipeline):
    model, scheduler = pipeline.model, pipeline.scheduler
    good, bad = prompt_ids(model, "calm piano"), prompt_ids(model, "loud drums")
    wrong = MediaFeatures(music=[None], image=[torch.zeros(2, 7)], video=[None])  # no image adapter takes this
    settings = GenerationSettings(max_new_tokens=6)
    alone = scheduler.submit(good, MediaFeatures(music=[None], image=[None], video=[None]), settings)
    scheduler.window_s, scheduler.max_batch = 10.0, 2  # the next two rows share a batch
    outcome = {}

    def work(name, prompt, media):
        try:
            outcome[name] = scheduler.submit(prompt, media, settings)
        except Exception as e:  # noqa: BLE001 -- the test inspects it
            outcome[name] = e

    threads = [threading.Thread(target=work, args=("bad", bad, wrong)),
               threading.Thread(target=work, args=("good", good, MediaFeatures(music=[None], image=[None],
                                                                               video=[None])))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert isinstance(outcome["bad"], Exception)
    assert outcome["good"].token_ids == alone.token_ids
    assert list(scheduler.text.batch_sizes) == [1, 2, 1, 1]  # the batch failed, then each row ran alone


def test_a_full_queue_refuses_cleanly_and_the_queued_turns_finish(pipeline):
    model, scheduler = pipeline.model, pipeline.scheduler
    scheduler.window_s, scheduler.max_batch, scheduler.max_queue = 0.0, 1, 1
    none = MediaFeatures(music=[None], image=[None], video=[None])
    settings = GenerationSettings(max_new_tokens=3)
    done = []
    threads = [threading.Thread(target=lambda: done.append(scheduler.submit(prompt_ids(model), none, settings)))
               for _ in range(2)]
    with scheduler.lock:  # the model is busy: the first turn waits for it, the second one waits in the queue
        threads[0].start()
        text = scheduler.text
        _until(lambda: list(text.batch_sizes) == [] and text.waiting == 0 and text._worker is not None)
        threads[1].start()
        _until(lambda: scheduler.text.waiting == 1)
        with pytest.raises(Busy, match="busy: 1 turns are waiting already; try again in a moment"):
            scheduler.submit(prompt_ids(model), none, settings)
    for t in threads:
        t.join(timeout=60)
    assert len(done) == 2 and done[0].token_ids == done[1].token_ids


def test_one_turn_in_flight_per_conversation(pipeline):
    conv, other = pipeline.new_conversation(), pipeline.new_conversation()
    replies = []
    options = ChatOptions(music="never", max_new_tokens=3)
    first = threading.Thread(target=lambda: replies.append(pipeline.chat(conv, "hello", options=options)))
    with pipeline.scheduler.lock:
        first.start()
        _until(lambda: pipeline.scheduler.text._worker is not None)
        with pytest.raises(TurnInProgress, match="already has a turn in progress"):
            pipeline.chat(conv, "hello again", options=options)
        second = threading.Thread(target=lambda: replies.append(pipeline.chat(other, "hello", options=options)))
        second.start()  # another conversation is welcome meanwhile
    first.join(timeout=60)
    second.join(timeout=60)
    assert len(replies) == 2 and conv.turns == other.turns == 1
    assert pipeline.chat(conv, "hello again", options=options).text is not None  # the slot is free again


@pytest.mark.parametrize(("field", "value"), [("batch_window_ms", -1), ("max_batch", 0), ("max_queue", 0)])
def test_scheduler_settings_are_checked_at_config_time(field, value):
    with pytest.raises(ValueError, match=rf"pipeline.{field}={value} is out of range"):
        PipelineConfig(**{field: value})


def _until(condition, seconds=30.0):
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("timed out waiting for the scheduler")


def test_a_batch_failing_midway_is_retried_row_by_row_and_streams_do_not_repeat(pipeline):
    model, scheduler = pipeline.model, pipeline.scheduler
    none = MediaFeatures(music=[None], image=[None], video=[None])
    settings = GenerationSettings(max_new_tokens=8, music="never")
    prompts = [prompt_ids(model, "calm piano"), prompt_ids(model, "loud drums and a bass line")]
    alone = [scheduler.submit(p, none, settings).token_ids for p in prompts]
    steps = []

    def fail_on_the_fourth_batched_step(module, args, out):
        if out.shape[0] == 2:
            steps.append(1)
            if len(steps) == 4:
                raise RuntimeError("out of memory (simulated)")

    handle = model.llm.get_output_embeddings().register_forward_hook(fail_on_the_fourth_batched_step)
    scheduler.window_s, scheduler.max_batch = 10.0, 2
    streamed, results = [[], []], [None, None]

    def work(i):
        results[i] = scheduler.submit(prompts[i], none, settings, on_token=lambda row, t: streamed[i].append(t))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        handle.remove()
    assert list(scheduler.text.batch_sizes)[2:] == [2, 1, 1]
    for i in range(2):
        assert results[i].token_ids == alone[i] and streamed[i] == alone[i]  # each token streamed exactly once


def test_a_short_reply_returns_while_a_longer_one_still_decodes(pipeline):
    model, scheduler = pipeline.model, pipeline.scheduler
    none = MediaFeatures(music=[None], image=[None], video=[None])
    scheduler.window_s, scheduler.max_batch = 10.0, 2
    short_back = threading.Event()
    seen_while_decoding = []
    results = {}

    def short():
        results["short"] = scheduler.submit(prompt_ids(model, "hi"), none, GenerationSettings(max_new_tokens=2))
        short_back.set()

    def long():
        results["long"] = scheduler.submit(prompt_ids(model, "tell me more"), none,
                                           GenerationSettings(max_new_tokens=30, music="never"),
                                           on_token=lambda row, t: seen_while_decoding.append(short_back.wait(0.5)))

    threads = [threading.Thread(target=short), threading.Thread(target=long)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert list(scheduler.text.batch_sizes) == [2]
    assert len(results["short"].token_ids) <= 2 and len(results["long"].token_ids) > 2
    assert len(seen_while_decoding) > 2 and seen_while_decoding[-1]  # the short caller had its reply mid-batch


def _music_turns(media):
    """Four turns that all make a track with the same decoder settings but their own seeds (one with a song)."""
    def options(seed, **kw):
        return ChatOptions(music="always", max_new_tokens=kw.pop("tokens", 8),  # [AUD0..7] need 8 tokens
                           sampling=SamplingSettings(duration=0.4, seed=seed), **kw)

    return [("make a calm tune", {}, options(11)),
            ("make music like this", {"audio": media["audio"]}, options(12, tokens=11)),
            ("something fast and loud", {}, options(13, temperature=1.0, top_p=0.9, tokens=12)),
            ("a slow waltz", {}, options(14, tokens=9))]


def test_concurrent_music_turns_share_a_decoder_batch_and_equal_each_turn_alone(pipeline, media):
    turns = _music_turns(media)
    alone = [_run(pipeline, turn) for turn in turns]
    assert list(pipeline.scheduler.music.batch_sizes) == [1, 1, 1, 1]
    assert all(a[2] is not None for a in alone) and not np.array_equal(alone[0][2], alone[3][2])
    together = _concurrently(pipeline, turns)
    assert list(pipeline.scheduler.text.batch_sizes)[4:] == [4]
    assert list(pipeline.scheduler.music.batch_sizes)[4:] == [4]  # the four tracks sampled as one decoder batch
    for a, t in zip(alone, together, strict=True):
        _same(a, t)  # the same text and the same samples in the track file


def test_music_turns_of_other_settings_or_decoders_batch_apart(pipeline, media):
    base = _music_turns(media)
    longer = ChatOptions(music="always", max_new_tokens=8, sampling=SamplingSettings(duration=0.5, seed=15))
    caption = ChatOptions(music="always", max_new_tokens=8, sampling=SamplingSettings(duration=0.4, seed=16),
                          conditioning="caption")
    turns = [base[0], base[3], ("a longer tune", {}, longer), ("a captioned tune", {}, caption)]
    alone = [_run(pipeline, turn) for turn in turns]
    pipeline.scheduler.max_batch = 2  # the lone rows of the other settings wait out only their own window
    pipeline.scheduler.window_s = 3.0
    together = _concurrently_with_window(pipeline, turns)
    assert sorted(list(pipeline.scheduler.music.batch_sizes)[4:]) == [1, 1, 2]
    for a, t in zip(alone, together, strict=True):
        _same(a, t)


def test_a_stopped_music_row_is_dropped_and_the_others_keep_their_tracks(pipeline, media):
    turns = _music_turns(media)[:3]
    alone = [_run(pipeline, turn) for turn in turns]
    together = _concurrently(pipeline, turns, {1: {"stop_at_music": True}})
    stopped = together[1]
    assert isinstance(stopped[0], Cancelled) and stopped[3].messages == [] and not any(stopped[3].out_dir.glob("*"))
    assert list(pipeline.scheduler.music.batch_sizes)[3:] == [2]  # the stopped row never reached the decoder
    _same(alone[0], together[0])
    _same(alone[2], together[2])


def test_a_music_batch_that_fails_is_retried_row_by_row(pipeline, media, monkeypatch):
    turns = _music_turns(media)[:3]
    alone = [_run(pipeline, turn) for turn in turns]
    decoder = pipeline.decoder_for()
    original = decoder.generate_batch

    def fail_when_batched(conds, settings, sources):
        if len(conds) > 1:
            raise RuntimeError("out of memory (simulated)")
        return original(conds, settings, sources)

    monkeypatch.setattr(decoder, "generate_batch", fail_when_batched)
    together = _concurrently(pipeline, turns)
    assert list(pipeline.scheduler.music.batch_sizes)[3:] == [3, 1, 1, 1]
    for a, t in zip(alone, together, strict=True):
        _same(a, t)


def _forwards(model):
    """(rows, columns) of every LLM forward from now on (columns 1: a decoding step, more: a prefill or a recompute)."""
    shapes = []
    handle = model.llm.get_input_embeddings().register_forward_hook(
        lambda m, args, out: shapes.append(tuple(out.shape[:2])))
    return shapes, handle


def _join_at_the_fourth_step(pipeline, fail_when_batched=False, continuous=True):
    """A greedy turn, and a seeded turn with media sent once the first has its third token: (the two turns, their
    tokens alone, their results together, their streamed tokens, the LLM forwards' shapes while together)."""
    model, scheduler = pipeline.model, pipeline.scheduler
    none = MediaFeatures(music=[None], image=[None], video=[None])
    turns = [(prompt_ids(model, "tell me more"), none, GenerationSettings(max_new_tokens=12, music="never")),
             (prompt_ids(model, "Describe the mood of a rainy afternoon"), media_for(model, seed=6, video=False),
              GenerationSettings(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=4, music="never"))]
    alone = [scheduler.submit(*turn).token_ids for turn in turns]
    assert scheduler.submit(turns[1][0], none, turns[1][2]).token_ids != alone[1]  # the media change the reply
    scheduler.prefix_cache.clear()  # every prompt is prefilled whole, so the forwards' shapes show who joins when
    scheduler.window_s, scheduler.max_batch, scheduler.continuous = 0.0, 4, continuous
    shapes, handle = _forwards(model)
    sent, results, streamed = threading.Event(), {}, [[], []]

    def on_first_token(row, token):
        streamed[0].append(token)
        if len(shapes) == 3:  # the first turn's third token: hold its batch until the second turn waits
            sent.set()
            _until(lambda: scheduler.text.waiting == 1)

    def later():
        sent.wait(60)
        results[1] = scheduler.submit(*turns[1], on_token=lambda row, token: streamed[1].append(token))

    def fail(module, args, out):
        if fail_when_batched and out.shape[0] == 2:
            raise RuntimeError("out of memory (simulated)")

    thread = threading.Thread(target=later)
    failing = model.llm.get_output_embeddings().register_forward_hook(fail)
    thread.start()
    try:
        results[0] = scheduler.submit(*turns[0], on_token=on_first_token)
        thread.join(timeout=60)
    finally:
        handle.remove()
        failing.remove()
    return turns, alone, results, streamed, shapes


def test_a_turn_sent_while_another_decodes_joins_its_batch_and_gets_its_result_alone(pipeline):
    turns, alone, results, streamed, shapes = _join_at_the_fourth_step(pipeline)
    assert [results[0].token_ids, results[1].token_ids] == alone == streamed
    assert list(pipeline.scheduler.text.batch_sizes)[3:] == [1]  # no second batch: the second turn joined the first
    assert shapes[:6] == [(1, len(turns[0][0])), (1, 1), (1, 1), (1, 1), (1, len(turns[1][0])), (2, 1)]


def test_a_batch_that_fails_after_a_turn_joined_it_retries_that_turn_too(pipeline):
    _, alone, results, streamed, shapes = _join_at_the_fourth_step(pipeline, fail_when_batched=True)
    assert shapes[5] == (2, 1)  # the first forward of the two rows together failed
    assert [results[0].token_ids, results[1].token_ids] == alone == streamed  # each token streamed exactly once
    assert list(pipeline.scheduler.text.batch_sizes)[3:] == [1, 1, 1]  # the batch, then each of its rows alone


def test_with_continuous_batching_off_a_turn_sent_during_a_batch_waits_for_the_next_one(pipeline):
    _, alone, results, streamed, shapes = _join_at_the_fourth_step(pipeline, continuous=False)
    assert [results[0].token_ids, results[1].token_ids] == alone == streamed
    assert list(pipeline.scheduler.text.batch_sizes)[3:] == [1, 1] and all(rows == 1 for rows, _ in shapes)


def test_rows_leave_the_batch_as_they_end_and_a_stop_leaves_the_others_intact(pipeline, media):
    turns = _turns(media)
    alone = [_run(pipeline, turn) for turn in turns]
    shapes, handle = _forwards(pipeline.model)
    try:
        together = _concurrently(pipeline, turns, {0: {"stop_after": 2}})
    finally:
        handle.remove()
    assert isinstance(together[0][0], Cancelled)
    for a, t in zip(alone[1:], together[1:], strict=True):
        _same(a, t)
    steps = [rows for rows, columns in shapes if columns == 1]  # the decoding steps' batch sizes
    assert steps[0] == 4 and steps[-1] == 1 and steps == sorted(steps, reverse=True)  # each row left as it ended
    assert len(steps) == 14 - 1  # the batch ended with its longest row (14 tokens: a prefill, then 13 steps)
