"""Readers for the published training files (MUCaps, COCO, MUVideo captions, MusicQA, Alpaca, MU* instructions).

Every record is validated; a bad record is skipped and counted, and the first few problems are reported as
"file[index]: what is wrong". A file that cannot be read, or that holds no usable record, is a ValueError.
Media paths stay as written (relative to the media root); the collator loads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from media.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, MediaKind, accepted

MAX_PROBLEMS = 5

DATA_KINDS: dict[str, str] = {
    "mucaps": "MUCaps audio caption map {file: caption}: music in, caption out (stage 1)",
    "mucaps-decoder": "MUCaps caption map read for decoder alignment: caption in, caption + music out (stage 2)",
    "coco": "COCO-style image caption map {file: caption}: image in, caption out (stage 1)",
    "muvideo-captions": "MUVideo caption map {file: caption}: video in, caption out (stage 1)",
    "musicqa": "MusicQA list of {audio_name (or image_name), conversation}: music question answering (stage 3)",
    "alpaca": "Alpaca text-only rows, {conversation} or {instruction, input, output} (stage 3)",
    "muimage": "MUImage instructions {input_file, output_file, conversation}: image in, music out (stage 3)",
    "muvideo": "MUVideo instructions {input_file, output_file, conversation}: video in, music out (stage 3)",
    "muedit": "MUEdit instructions {input_file, output_file, conversation}: music in, edited music out (stage 3)",
}

# Caption-map kinds: which modality the file name holds (mucaps-decoder uses it only as the target audio).
_CAPTION_KINDS = {"mucaps": "music", "mucaps-decoder": "music", "coco": "image", "muvideo-captions": "video"}
# Instruction kinds: the modality of input_file; output_file is always music.
_INSTRUCTION_KINDS = {"muimage": "image", "muvideo": "video", "muedit": "music"}
_MEDIA_KIND: dict[str, MediaKind] = {"music": "audio", "image": "image", "video": "video"}
# Extensions only: opening every file of a 20k-record dataset to sniff its content would take minutes.
_EXTENSIONS = {"music": AUDIO_EXTENSIONS, "image": IMAGE_EXTENSIONS, "video": VIDEO_EXTENSIONS}
# The instruction files name the input modality "audio" where this project says "music".
_INPUT_MODALITY_NAMES = {"music": "audio", "image": "image", "video": "video"}


@dataclass(frozen=True)
class Turn:
    """One exchange: the human text ('' only for captioning) and the answer, without [AUD] tokens or EOS."""

    user: str
    assistant: str


@dataclass(frozen=True)
class Record:
    """One validated training example; media paths are relative to the media root, as written in the file."""

    kind: str
    origin: str
    turns: tuple[Turn, ...]
    media: dict[str, str]
    music_caption: str | None = None
    target_audio: str | None = None


@dataclass
class ReadReport:
    """What reading one file kept and skipped; problems holds the first few reasons."""

    path: str
    kind: str
    total: int
    kept: int
    skipped: int
    problems: list[str]
    swapped: int = 0

    def summary(self) -> str:
        """One paragraph for logs: counts, the swap fix, and the first problems."""
        text = f"{self.path} ({self.kind}): kept {self.kept} of {self.total} records"
        if self.skipped:
            text += f", skipped {self.skipped}"
        if self.swapped:
            text += f", swapped input_file/output_file back in {self.swapped}"
        if self.problems:
            text += "; first problems:\n  " + "\n  ".join(self.problems)
        return text


class _Bad(Exception):
    """One record is unusable; the message says why."""


class _Object(dict):
    """A JSON object that remembers keys given more than once (json keeps only the last silently)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    obj.duplicates = []
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                obj.duplicates.append(key)
            seen.add(key)
    return obj


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise ValueError(f"{path}: data file not found")
    if not path.is_file():
        raise ValueError(f"{path}: is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    try:
        return json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from e


def _type_name(value: Any) -> str:
    return {dict: "an object", _Object: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _obj(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{what} must be an object, got {_type_name(value)}")
    if getattr(value, "duplicates", None):
        raise _Bad(f"{what} gives key {value.duplicates[0]!r} more than once")
    return value


def _text(value: Any, what: str) -> str:
    if value is None:
        raise _Bad(f"{what} is missing or null")
    if not isinstance(value, str):
        raise _Bad(f"{what} must be a string, got {_type_name(value)}")
    text = value.strip()
    if not text:
        raise _Bad(f"{what} is empty")
    return text


def _one_of(row: dict, names: tuple[str, ...]) -> tuple[str, Any]:
    """The value under the first present key of `names`; two present keys must agree."""
    present = [name for name in names if name in row]
    if not present:
        raise _Bad(f"missing {' or '.join(repr(n) for n in names)}")
    if len(present) > 1 and any(row[n] != row[present[0]] for n in present[1:]):
        raise _Bad(f"{' and '.join(repr(n) for n in present)} are both given and differ")
    return present[0], row[present[0]]


def _conversation(row: dict) -> tuple[list[dict], tuple[Turn, ...]]:
    """The raw turn objects and the validated human/gpt pairs of a row's conversation."""
    key, raw = _one_of(row, ("conversation", "conversations"))
    if not isinstance(raw, list):
        raise _Bad(f"{key!r} must be a list of turns, got {_type_name(raw)}")
    if not raw:
        raise _Bad(f"{key!r} is empty")
    if len(raw) % 2:
        raise _Bad(f"{key!r} has {len(raw)} turns; it must alternate human/gpt and end with gpt")
    texts = []
    for i, turn in enumerate(raw):
        where = f"{key}[{i}]"
        turn = _obj(turn, where)
        expected = "human" if i % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            raise _Bad(f"{where}.from must be {expected!r} (turns alternate human/gpt), got {turn.get('from')!r}")
        texts.append(_text(turn.get("value"), f"{where}.value"))
    return raw, tuple(Turn(texts[i], texts[i + 1]) for i in range(0, len(texts), 2))


def _relative_path(value: Any, what: str, modality: str) -> str:
    """A media file name that stays inside the media root and has an extension of `modality`."""
    name = _text(value, what)
    path = PurePath(name)
    if path.is_absolute() or name.startswith(("/", "\\")):
        raise _Bad(f"{what} {name!r} is an absolute path; paths must be relative to the media root")
    if ".." in path.parts:
        raise _Bad(f"{what} {name!r} leaves the media root ('..' is not allowed)")
    if path.suffix.lower() not in _EXTENSIONS[modality]:
        raise _Bad(f"{what} {name!r} is not a {modality} file (accepted: {accepted(_MEDIA_KIND[modality])})")
    return name


class _Reader:
    """Turns one file's rows into Records for one kind; counts the swap fixes it makes."""

    def __init__(self, kind: str, media_root: Path | None) -> None:
        self.kind = kind
        self.media_root = media_root
        self.swapped = 0

    def media(self, value: Any, what: str, modality: str) -> str:
        name = _relative_path(value, what, modality)
        if self.media_root is not None and not (self.media_root / name).is_file():
            raise _Bad(f"{what} {name!r} not found under the media root {self.media_root}")
        return name

    def caption(self, key: str, value: Any, origin: str) -> Record:
        caption = _text(value, "caption")
        modality = _CAPTION_KINDS[self.kind]
        if self.kind == "mucaps-decoder":
            # Decoder alignment reads no media: the caption is the instruction, the answer and the MSE target.
            target = _relative_path(key, "file name", modality)
            return Record(self.kind, origin, (Turn(caption, caption),), {}, music_caption=caption,
                          target_audio=target)
        return Record(self.kind, origin, (Turn("", caption),), {modality: self.media(key, "file name", modality)})

    def musicqa(self, row: dict, origin: str) -> Record:
        key, audio = _one_of(row, ("audio_name", "image_name"))
        _, turns = _conversation(row)
        return Record(self.kind, origin, turns, {"music": self.media(audio, key, "music")})

    def alpaca(self, row: dict, origin: str) -> Record:
        if "conversation" in row or "conversations" in row:
            if "instruction" in row or "output" in row:
                raise _Bad("has both a conversation and instruction/output fields; use one row style")
            _, turns = _conversation(row)
            return Record(self.kind, origin, turns, {})
        instruction = _text(row.get("instruction"), "'instruction'")
        extra = row.get("input", "")
        if not isinstance(extra, str):
            raise _Bad(f"'input' must be a string, got {_type_name(extra)}")
        if extra.strip():
            instruction += "\n\n" + extra.strip()
        return Record(self.kind, origin, (Turn(instruction, _text(row.get("output"), "'output'")),), {})

    def instruction(self, row: dict, origin: str) -> Record:
        modality = _INSTRUCTION_KINDS[self.kind]
        input_file, output_file = row.get("input_file"), row.get("output_file")
        # MUImage's generator wrote the mp3 into input_file and the jpg into output_file.
        if (modality != "music" and isinstance(input_file, str) and isinstance(output_file, str)
                and PurePath(input_file).suffix.lower() in AUDIO_EXTENSIONS
                and PurePath(output_file).suffix.lower() in _EXTENSIONS[modality]):
            input_file, output_file = output_file, input_file
            swapped = True
        else:
            swapped = False
        raw, turns = _conversation(row)
        said = raw[0].get("input_modality")
        if said is not None and said != _INPUT_MODALITY_NAMES[modality]:
            raise _Bad(f"conversation[0].input_modality is {said!r}; a {self.kind} file has "
                       f"{_INPUT_MODALITY_NAMES[modality]!r} input")
        last = len(raw) - 1
        made = raw[-1].get("output_modality")
        if made is not None and made != "audio":
            raise _Bad(f"conversation[{last}].output_modality is {made!r}; a {self.kind} answer makes 'audio'")
        caption = _text(raw[-1].get("caption"), f"conversation[{last}].caption (the target music caption)")
        record = Record(self.kind, origin, turns, {modality: self.media(input_file, "input_file", modality)},
                        music_caption=caption, target_audio=_relative_path(output_file, "output_file", "music"))
        self.swapped += swapped
        return record


def read_records(kind: str, path: str | Path, media_root: str | Path | None = None) -> tuple[list[Record], ReadReport]:
    """Read and validate one data file; bad records are skipped and reported; no usable record -> ValueError."""
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; choose one of {', '.join(DATA_KINDS)}")
    path = Path(path)
    root = None if media_root is None else Path(media_root)
    if root is not None and not root.is_dir():
        raise ValueError(f"media root {root} is not a directory")
    data = _load_json(path)
    reader = _Reader(kind, root)
    if kind in _CAPTION_KINDS:
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a {kind} file is a JSON object {{file name: caption}}, "
                             f"got {_type_name(data)}")
        duplicates = data.duplicates
        items = [(repr(key), (key, value)) for key, value in data.items()]
    else:
        if not isinstance(data, list):
            raise ValueError(f"{path}: a {kind} file is a JSON list of records, got {_type_name(data)}")
        duplicates = []
        items = [(str(i), row) for i, row in enumerate(data)]

    records: list[Record] = []
    problems = [f"{path}[{key!r}]: key given more than once; only its last caption is used" for key in duplicates]
    for label, item in items:
        origin = f"{path}[{label}]"
        try:
            if kind in _CAPTION_KINDS:
                records.append(reader.caption(*item, origin))
                continue
            row = _obj(item, "record")
            build = {"musicqa": reader.musicqa, "alpaca": reader.alpaca}.get(kind, reader.instruction)
            records.append(build(row, origin))
        except _Bad as e:
            problems.append(f"{origin}: {e}")
    skipped = len(problems)
    report = ReadReport(str(path), kind, len(items) + len(duplicates), len(records), skipped,
                        problems[:MAX_PROBLEMS], reader.swapped)
    if not records:
        detail = "; first problems:\n  " + "\n  ".join(report.problems) if report.problems else " (the file is empty)"
        raise ValueError(f"{path}: no usable {kind} record in {report.total}{detail}")
    return records, report


def parse_data_arg(spec: str) -> list[tuple[str, Path]]:
    """'KIND=PATH[,KIND=PATH]' -> [(kind, path)] with clear errors for unknown kinds / malformed specs."""
    pairs: list[tuple[str, Path]] = []
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            raise ValueError(f"--data {spec!r} has an empty entry; write KIND=PATH[,KIND=PATH]")
        kind, sep, path = (part.strip() for part in entry.partition("="))
        if not sep or not kind or not path:
            raise ValueError(f"--data entry {entry!r} is not KIND=PATH (kinds: {', '.join(DATA_KINDS)})")
        if kind not in DATA_KINDS:
            raise ValueError(f"--data entry {entry!r}: unknown kind {kind!r}; choose one of {', '.join(DATA_KINDS)}")
        pair = (kind, Path(path).expanduser())
        if pair in pairs:
            raise ValueError(f"--data names {kind}={path} twice")
        pairs.append(pair)
    return pairs


def read_all(specs: list[tuple[str, Path]], media_root: str | Path | None) -> tuple[list[Record], list[ReadReport]]:
    """Read every (kind, path) in order; any unreadable or unusable file stops with its ValueError."""
    records: list[Record] = []
    reports: list[ReadReport] = []
    for kind, path in specs:
        kept, report = read_records(kind, path, media_root)
        records += kept
        reports.append(report)
    return records, reports
