"""Dataset readers: each published schema, record validation, the MUImage swap fix and --data parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mumu.data.records import (
    DATA_KINDS,
    MAX_PROBLEMS,
    Record,
    Turn,
    parse_data_arg,
    read_all,
    read_records,
)


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def media_root(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "media"
    root.mkdir(exist_ok=True)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def conv(*texts, **last_extra) -> list[dict]:
    turns = [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)]
    turns[-1].update(last_extra)
    return turns


def mu_row(input_file: str, output_file: str, modality: str = "image", caption="calm piano") -> dict:
    return {"input_file": input_file, "output_file": output_file, "conversation": [
        {"from": "human", "value": "Generate a music for this", "input_modality": modality, "caption": "a lake"},
        {"from": "gpt", "value": "Here is a music that is calm", "caption": caption, "output_modality": "audio"},
    ]}


def test_kinds_are_the_published_ones():
    assert set(DATA_KINDS) == {"mucaps", "mucaps-decoder", "coco", "muvideo-captions", "musicqa", "alpaca",
                               "muimage", "muvideo", "muedit"}


def test_mucaps_caption_map_with_bad_records(tmp_path):
    path = write(tmp_path, "MUCapsCaptions.json", {
        "a.mp3": "  A calm piano piece.  ", "b.wav": "", "c.txt": "Drums.", "d.mp3": ["list"], "e.flac": "Jazz"})
    records, report = read_records("mucaps", path)
    assert [r.media for r in records] == [{"music": "a.mp3"}, {"music": "e.flac"}]
    assert records[0] == Record("mucaps", f"{path}['a.mp3']", (Turn("", "A calm piano piece."),), {"music": "a.mp3"})
    assert records[0].music_caption is None
    assert (report.total, report.kept, report.skipped, report.swapped) == (5, 2, 3, 0)
    assert report.problems[0] == f"{path}['b.wav']: caption is empty"
    assert report.problems[1].startswith(f"{path}['c.txt']: file name 'c.txt' is not a music file (accepted: wav")
    assert report.problems[2] == f"{path}['d.mp3']: caption must be a string, got a list"


def test_mucaps_decoder_reads_the_same_file_as_caption_to_caption_plus_music(tmp_path):
    path = write(tmp_path, "MUCapsCaptions.json", {"a.mp3": "Calm piano.", "b.mp3": "Loud drums."})
    records, report = read_records("mucaps-decoder", path, media_root(tmp_path))  # audio need not exist
    assert records[1] == Record("mucaps-decoder", f"{path}['b.mp3']", (Turn("Loud drums.", "Loud drums."),), {},
                                music_caption="Loud drums.", target_audio="b.mp3")
    assert report.kept == 2


def test_coco_and_muvideo_caption_maps(tmp_path):
    coco = write(tmp_path, "COCOCaptions.json", {"train2014/x.jpg": "a dog", "y.mp4": "a cat"})
    records, report = read_records("coco", coco)
    assert records[0].media == {"image": "train2014/x.jpg"} and records[0].turns == (Turn("", "a dog"),)
    assert "is not a image file" in report.problems[0] and "jpg" in report.problems[0]
    video = write(tmp_path, "MUVideoCaptions.json", {"v.mp4": "people dancing"})
    records, _ = read_records("muvideo-captions", video)
    assert records[0].media == {"video": "v.mp4"}


def test_duplicate_caption_keys_are_counted_not_silently_dropped(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"a.mp3": "first", "b.mp3": "other", "a.mp3": "second"}')
    records, report = read_records("mucaps", path)
    assert [r.turns[0].assistant for r in records] == ["second", "other"]
    assert (report.total, report.kept, report.skipped) == (3, 2, 1)
    assert report.problems == [f"{path}['a.mp3']: key given more than once; only its last caption is used"]


def test_musicqa_audio_name_image_name_and_multi_turn(tmp_path):
    root = media_root(tmp_path, "a.wav", "b.mp3", "c.mp3")
    path = write(tmp_path, "MusicQA.json", [
        {"audio_name": "a.wav", "conversation": conv("What tempo?", "Fast.")},
        {"image_name": "b.mp3", "conversations": conv("Instruments?", "Guitar.", " And the mood? ", "Happy.")},
        {"audio_name": "c.mp3", "conversation": conv("Q", None)},
        {"audio_name": "missing.mp3", "conversation": conv("Q", "A")},
        {"audio_name": "a.wav", "image_name": "b.mp3", "conversation": conv("Q", "A")},
        {"audio_name": "c.mp3", "conversation": conv("Q", "A", "Q2")},
        {"audio_name": "c.mp3", "conversation": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]},
        "not an object",
    ])
    records, report = read_records("musicqa", path, root)
    assert [r.media for r in records] == [{"music": "a.wav"}, {"music": "b.mp3"}]
    assert records[1].turns == (Turn("Instruments?", "Guitar."), Turn("And the mood?", "Happy."))
    assert all(r.music_caption is None and r.target_audio is None for r in records)
    assert (report.total, report.kept, report.skipped) == (8, 2, 6)
    assert report.problems == [
        f"{path}[2]: conversation[1].value is missing or null",
        f"{path}[3]: audio_name 'missing.mp3' not found under the media root {root}",
        f"{path}[4]: 'audio_name' and 'image_name' are both given and differ",
        f"{path}[5]: 'conversation' has 3 turns; it must alternate human/gpt and end with gpt",
        f"{path}[6]: conversation[0].from must be 'human' (turns alternate human/gpt), got 'gpt'",
    ]
    assert len(report.problems) == MAX_PROBLEMS  # the 6th problem (record 7) is counted, not listed
    assert f"{path}[7]" not in report.summary() and "skipped 6" in report.summary()


def test_alpaca_both_row_styles(tmp_path):
    path = write(tmp_path, "alpaca_data.json", [
        {"instruction": "Give three tips.", "input": "", "output": "Eat, sleep, move."},
        {"instruction": "Translate.", "input": "  Bonjour ", "output": "Hello"},
        {"conversation": conv("Hi", "Hello!", "Name a colour", "Blue")},
        {"instruction": "No output"},
        {"instruction": "x", "input": 3, "output": "y"},
        {"conversation": conv("Hi", "Hello"), "instruction": "x", "output": "y"},
    ])
    records, report = read_records("alpaca", path)
    assert [r.turns for r in records] == [
        (Turn("Give three tips.", "Eat, sleep, move."),),
        (Turn("Translate.\n\nBonjour", "Hello"),),
        (Turn("Hi", "Hello!"), Turn("Name a colour", "Blue")),
    ]
    assert all(r.media == {} for r in records)
    assert report.problems == [
        f"{path}[3]: 'output' is missing or null",
        f"{path}[4]: 'input' must be a string, got a number",
        f"{path}[5]: has both a conversation and instruction/output fields; use one row style",
    ]


def test_muimage_swap_fix_and_validation(tmp_path):
    root = media_root(tmp_path, "images/a.jpg", "images/b.png")
    path = write(tmp_path, "MUImageInstructions.json", [
        mu_row("images/a.jpg", "audios/a.mp3"),
        mu_row("audios/b.mp3", "images/b.png"),  # the generator's swapped order
        mu_row("images/a.jpg", "audios/a.mp3", caption=None),
        mu_row("images/a.jpg", "audios/a.mp3", modality="video"),
        mu_row("images/a.jpg", "audios/a.txt"),
    ])
    records, report = read_records("muimage", path, root)
    assert records[0] == Record(
        "muimage", f"{path}[0]",
        (Turn("Generate a music for this", "Here is a music that is calm"),),
        {"image": "images/a.jpg"}, music_caption="calm piano", target_audio="audios/a.mp3",
    )
    assert records[1].media == {"image": "images/b.png"} and records[1].target_audio == "audios/b.mp3"
    assert (report.kept, report.skipped, report.swapped) == (2, 3, 1)
    assert report.problems[0] == (f"{path}[2]: conversation[1].caption (the target music caption) "
                                  "is missing or null")
    assert report.problems[1] == (f"{path}[3]: conversation[0].input_modality is 'video'; "
                                  "a muimage file has 'image' input")
    assert report.problems[2].startswith(f"{path}[4]: output_file 'audios/a.txt' is not a music file")
    assert "swapped input_file/output_file back in 1" in report.summary()


def test_muvideo_and_muedit_instructions(tmp_path):
    video = write(tmp_path, "MUVideoInstructions.json", [mu_row("v.mp4", "v.mp3", modality="video")])
    records, _ = read_records("muvideo", video)
    assert records[0].media == {"video": "v.mp4"} and records[0].music_caption == "calm piano"
    edit = write(tmp_path, "MUEditInstructions.json", [
        mu_row("src.mp3", "dst.wav", modality="audio"),
        mu_row("src.jpg", "dst.mp3", modality="audio"),
    ])
    records, report = read_records("muedit", edit)
    assert records[0].media == {"music": "src.mp3"} and records[0].target_audio == "dst.wav"
    assert report.swapped == 0 and report.problems[0].startswith(f"{edit}[1]: input_file 'src.jpg' is not a music")


def test_media_paths_may_not_escape_the_root(tmp_path):
    root = media_root(tmp_path, "ok.mp3")
    (tmp_path / "outside.mp3").write_bytes(b"x")
    path = write(tmp_path, "caps.json", {"ok.mp3": "fine", "../outside.mp3": "escape", "/etc/x.mp3": "abs"})
    records, report = read_records("mucaps", path, root)
    assert [r.media["music"] for r in records] == ["ok.mp3"]
    assert report.problems == [
        f"{path}['../outside.mp3']: file name '../outside.mp3' leaves the media root ('..' is not allowed)",
        f"{path}['/etc/x.mp3']: file name '/etc/x.mp3' is an absolute path; paths must be relative to the media root",
    ]


def test_media_existence_is_checked_only_with_a_root(tmp_path):
    path = write(tmp_path, "caps.json", {"here.mp3": "a", "gone.mp3": "b"})
    records, _ = read_records("mucaps", path)
    assert len(records) == 2
    records, report = read_records("mucaps", path, media_root(tmp_path, "here.mp3"))
    assert len(records) == 1 and "'gone.mp3' not found under the media root" in report.problems[0]
    with pytest.raises(ValueError, match="is not a directory"):
        read_records("mucaps", path, tmp_path / "nowhere")


def test_no_usable_record_is_an_error_naming_the_problems(tmp_path):
    path = write(tmp_path, "coco_as_mucaps.json", {"x.jpg": "a dog"})
    with pytest.raises(ValueError, match=r"no usable mucaps record in 1; first problems:\n.*'x.jpg' is not a music"):
        read_records("mucaps", path)
    with pytest.raises(ValueError, match=r"no usable alpaca record in 0 \(the file is empty\)"):
        read_records("alpaca", write(tmp_path, "empty.json", []))


def test_whole_file_errors(tmp_path):
    with pytest.raises(ValueError, match="data file not found"):
        read_records("mucaps", tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"a": 1,}\n]')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON: .* at line 2, column 11"):
        read_records("alpaca", broken)
    with pytest.raises(ValueError, match=r"a mucaps file is a JSON object \{file name: caption\}, got a list"):
        read_records("mucaps", write(tmp_path, "list.json", [{"a.mp3": "x"}]))
    with pytest.raises(ValueError, match="a musicqa file is a JSON list of records, got an object"):
        read_records("musicqa", write(tmp_path, "map.json", {"a.mp3": "x"}))
    with pytest.raises(ValueError, match="unknown data kind 'caps'"):
        read_records("caps", broken)


def test_parse_data_arg(tmp_path):
    assert parse_data_arg(" mucaps=a.json, mucaps-decoder=a.json,muimage=d/x=y.json") == [
        ("mucaps", Path("a.json")), ("mucaps-decoder", Path("a.json")), ("muimage", Path("d/x=y.json"))]
    for spec, message in [
        ("mucaps", "'mucaps' is not KIND=PATH"),
        ("=a.json", "is not KIND=PATH"),
        ("mucaps=", "is not KIND=PATH"),
        ("mucaps=a.json,", "has an empty entry"),
        ("caps=a.json", "unknown kind 'caps'; choose one of mucaps, mucaps-decoder"),
        ("coco=a.json,coco=a.json", "names coco=a.json twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_data_arg(spec)


def test_read_all_concatenates_in_order_and_stops_on_a_bad_file(tmp_path):
    root = media_root(tmp_path, "a.mp3", "i.jpg")
    caps = write(tmp_path, "caps.json", {"a.mp3": "calm"})
    coco = write(tmp_path, "coco.json", {"i.jpg": "a dog"})
    records, reports = read_all(parse_data_arg(f"mucaps={caps},coco={coco}"), root)
    assert [r.kind for r in records] == ["mucaps", "coco"]
    assert [(r.kind, r.kept) for r in reports] == [("mucaps", 1), ("coco", 1)]
    with pytest.raises(ValueError, match=r"nope\.json: data file not found"):
        read_all([("mucaps", caps), ("coco", tmp_path / "nope.json")], root)
