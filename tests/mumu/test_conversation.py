"""Conversation bookkeeping: ids, the pending turn, commit and undo, independent of any model."""

from __future__ import annotations

from pathlib import Path

import pytest

from mumu.conversation import Conversation, MediaItem
from mumu.prompting import Message


def _item(conv: Conversation, tmp_path: Path, modality: str, generated: bool = False) -> MediaItem:
    media_id = conv.new_id(modality, generated)
    path = tmp_path / f"{media_id}.wav"
    path.write_bytes(b"x")
    return MediaItem(media_id, modality, path, digest=media_id, generated=generated)


def _turn(text: str, reply: str) -> list[Message]:
    return [Message("user", text), Message("assistant", reply)]


def test_ids_are_unique_and_say_what_they_are(tmp_path):
    conv = Conversation("c", tmp_path)
    assert [conv.new_id("music"), conv.new_id("image"), conv.new_id("music", generated=True)] == \
        ["music-1", "image-2", "track-3"]


def test_nothing_changes_until_commit_and_generated_tracks_are_never_active(tmp_path):
    conv = Conversation("c", tmp_path)
    song = _item(conv, tmp_path, "music")
    turn = conv.begin((song,), use=None, edit=None)
    assert conv.media == [] and conv.active == {} and turn.active == {"music": song.id}
    assert conv.item(song.id, turn) is song
    with pytest.raises(ValueError, match="no media 'music-1'"):
        conv.item(song.id)
    turn.track = _item(conv, tmp_path, "music", generated=True)
    conv.commit(turn, _turn("listen", "ok"))
    assert [m.id for m in conv.media] == ["music-1", "track-2"] and conv.active == {"music": "music-1"}
    assert conv.turns == 1 and conv.turn_media == [("music-1", "track-2")]


def test_edit_and_use_pick_items_of_the_right_modality(tmp_path):
    conv = Conversation("c", tmp_path)
    song, picture = _item(conv, tmp_path, "music"), _item(conv, tmp_path, "image")
    conv.commit(conv.begin((song, picture), None, None), _turn("a", "b"))
    track = _item(conv, tmp_path, "music", generated=True)
    conv.add(track)
    turn = conv.begin((), use=None, edit=track.id)
    assert turn.source is track and turn.active["music"] == track.id
    with pytest.raises(ValueError, match="'image-2' is not music"):
        conv.begin((), use={"music": picture.id}, edit=None)


def test_undo_forgets_the_last_turn_and_deletes_only_generated_files(tmp_path):
    conv = Conversation("c", tmp_path)
    first = _item(conv, tmp_path, "music")
    conv.commit(conv.begin((first,), None, None), _turn("one", "1"))
    second = _item(conv, tmp_path, "music")
    turn = conv.begin((second,), None, None)
    turn.track = _item(conv, tmp_path, "music", generated=True)
    turn.track.path.with_suffix(".mp4").write_bytes(b"v")
    conv.commit(turn, [*conv.messages, *_turn("two", "2")])
    assert conv.active == {"music": second.id}
    assert conv.undo()
    assert [m.text for m in conv.messages] == ["one", "1"] and [m.id for m in conv.media] == [first.id]
    assert conv.active == {"music": first.id}
    assert not turn.track.path.exists() and not turn.track.path.with_suffix(".mp4").exists()
    assert second.path.exists()  # an upload is the user's file: never deleted
    assert conv.undo() and not conv.undo()


def test_a_discarded_turn_leaves_no_files(tmp_path):
    conv = Conversation("c", tmp_path)
    turn = conv.begin((), None, None)
    turn.track = _item(conv, tmp_path, "music", generated=True)
    turn.discard()
    assert not turn.track.path.exists() and conv.media == []
