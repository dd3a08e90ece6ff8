"""Row files of the captioning and generation tasks: fields, defaults, and clear errors."""

from __future__ import annotations

import json

import pytest

from mumu.eval.captioning import CAPTION_QUESTION, load_text_items
from mumu.eval.data import swap_field
from mumu.eval.generation import load_generation_items
from mumu.eval.runner import Item


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_caption_rows_default_the_question_and_find_musiccaps_audio_by_ytid(tmp_path):
    audio = tmp_path / "musiccaps" / "audio" / "[abc]-[30-40].wav"
    audio.parent.mkdir(parents=True)
    audio.write_bytes(b"x")
    data = _write(tmp_path / "c.jsonl", [{"ytid": "abc", "caption": "a calm piano"},
                                         {"Audio": "x.wav", "Question": "Tempo?", "references": ["fast", "quick"]}])
    first, second = load_text_items(data, tmp_path, "captioning")
    assert first.data == {"audio": str(audio), "question": CAPTION_QUESTION, "references": ["a calm piano"]}
    assert second.data["question"] == "Tempo?" and second.data["references"] == ["fast", "quick"]
    assert second.data["audio"] == str(tmp_path / "x.wav")


def test_text_rows_without_references_or_musicqa_question_are_refused(tmp_path):
    with pytest.raises(ValueError, match="row 1: no reference text"):
        load_text_items(_write(tmp_path / "a.jsonl", [{"audio": "x.wav"}]), tmp_path, "captioning")
    with pytest.raises(ValueError, match="musicqa needs a question"):
        load_text_items(_write(tmp_path / "b.jsonl", [{"audio": "x.wav", "answer": "y"}]), tmp_path, "musicqa")


def test_generation_rows_resolve_media_and_judge_video_against_its_own_clip(tmp_path):
    data = _write(tmp_path / "v.jsonl", [{"id": "a", "video": "a.mp4", "reference": "a.wav"},
                                         {"id": "b", "video": "b.mp4", "caption": "drums"}])
    a, b = load_generation_items(data, tmp_path, "video2music")
    assert a.data["media"] == str(tmp_path / "a.mp4") and a.data["judge_video"] == a.data["media"]
    assert a.data["prompt"] == "Generate music for this video" and a.data["reference"] == str(tmp_path / "a.wav")
    assert b.data["clap_text"] == "drums" and b.data["reference"] is None
    edit = load_generation_items(_write(tmp_path / "e.jsonl", [{"audio": "s.wav", "prompt": "faster"}]), None, "edit")
    assert edit[0].data["media"] == "s.wav"


def test_generation_rows_missing_their_media_or_prompt_are_refused(tmp_path):
    with pytest.raises(ValueError, match="image2music needs `image`"):
        load_generation_items(_write(tmp_path / "i.jsonl", [{"prompt": "x"}]), tmp_path, "image2music")
    with pytest.raises(ValueError, match="text2music needs a prompt"):
        load_generation_items(_write(tmp_path / "t.jsonl", [{"reference": "r.wav"}]), tmp_path, "text2music")


def test_a_swap_changes_only_what_the_model_reads_and_skips_items_sharing_it():
    items = [Item(k, {"media": m, "reference": f"{k}.wav", "judge_video": m})
             for k, m in (("a", "a.mp4"), ("b", "a.mp4"), ("c", "c.mp4"))]
    swapped = swap_field(items[0], items, "media")
    assert swapped.id == "a~swap" and swapped.data["media"] == "c.mp4" and swapped.data["swapped_with"] == "c"
    assert swapped.data["judge_video"] == "a.mp4" and swapped.data["reference"] == "a.wav"
    assert swap_field(items[2], items, "media").data["swapped_with"] == "a"  # wraps around
    assert swap_field(items[0], items[:2], "media") is None
