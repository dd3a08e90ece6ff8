"""A small dataset in the published formats (real media files), shared by the training tests."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from bench.attributes import SR, balanced_values, clip, melody, picture
from mumu.cli import main


def write_dataset(root: Path, n: int = 4, seed: int = 0) -> dict[str, Path]:
    """n audio clips, n pictures, 2 videos; caption maps, MusicQA, MUImage and decoder-alignment captions."""
    rng = np.random.default_rng(seed)
    for folder in ("audios", "images", "videos"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    import soundfile as sf

    audio, images, videos = {}, {}, {}
    for i, values in enumerate(balanced_values(rng, n)):
        tempo = values["tempo"]
        sf.write(root / f"audios/{i}.wav", melody(rng, values), SR, subtype="PCM_16")
        audio[f"audios/{i}.wav"] = f"notes at a {tempo} tempo"
        colour = ("red", "blue")[i % 2]
        picture(rng, colour).save(root / f"images/{i}.png")
        images[f"images/{i}.png"] = f"a {colour} picture"
    for i, direction in enumerate(("left", "right")):
        clip(root / f"videos/{i}.mp4", rng, direction)
        videos[f"videos/{i}.mp4"] = f"a square moving {direction}"
    qa = [{"audio_name": name, "conversation": [{"from": "human", "value": "Slow or fast?"},
                                                 {"from": "gpt", "value": caption}]}
          for name, caption in audio.items()]
    muimage = [{"input_file": name, "output_file": f"audios/{i}.wav", "conversation": [
        {"from": "human", "value": "Music for this picture", "input_modality": "image", "caption": caption},
        {"from": "gpt", "value": "Here is a calm tune.", "caption": "a calm tune on piano",
         "output_modality": "audio"}]} for i, (name, caption) in enumerate(images.items())]
    decoder = {f"audios/{i}.wav": f"a {('slow', 'fast')[i % 2]} tune on {('piano', 'drums')[i % 2]}" for i in range(n)}
    files = {"mucaps": audio, "coco": images, "muvideo-captions": videos, "musicqa": qa, "muimage": muimage,
             "mucaps-decoder": decoder}
    paths = {}
    for kind, data in files.items():
        paths[kind] = root / f"{kind}.json"
        paths[kind].write_text(json.dumps(data))
    return paths


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """(media root, data kind -> file) written once per test session."""
    root = tmp_path_factory.mktemp("dataset")
    return root, write_dataset(root)


def spec(paths: dict[str, Path], *kinds: str) -> str:
    """A --data argument for the given kinds."""
    return ",".join(f"{kind}={paths[kind]}" for kind in kinds)


def run_cli(*args: object) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    text = out.getvalue().strip()
    return code, json.loads(text.splitlines()[-1]) if code == 0 and text else None, err.getvalue()


@pytest.fixture(scope="session")
def features(dataset, tmp_path_factory) -> Path:
    root, paths = dataset
    out = tmp_path_factory.mktemp("features")
    code, result, err = run_cli("features", "--profile", "tiny", "--data",
                                spec(paths, "mucaps", "coco", "muvideo-captions", "mucaps-decoder", "muimage"),
                                "--media-root", root, "--out", out)
    assert code == 0, err
    # 4 clips + 4 pictures + 2 videos; 2 distinct decoder captions + 1 MUImage caption (stored by content)
    assert result["computed"] == {"music": 4, "image": 4, "video": 2, "target": 3}
    return out
