"""Rebuild the tiny profile's tokenizer files (tokenizer.json, tokenizer_config.json) from a built-in corpus.

The tiny profile must build offline, so its tokenizer lives in the repo. It is a real Llama tokenizer
(SentencePiece BPE, byte fallback) trained on a few hundred music sentences: the same class and code
path as Llama-2's, just a small vocabulary. Run: python checkpoints/tiny/build_tokenizer.py
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import sentencepiece as spm
from transformers import LlamaTokenizer

OUT = Path(__file__).parent / "tokenizer"
VOCAB_SIZE = 512

WORDS = {
    "genre": ["jazz", "rock", "pop", "classical", "ambient", "electronic", "hip hop", "folk", "blues", "metal"],
    "instrument": ["piano", "guitar", "drums", "bass", "violin", "synth", "saxophone", "cello", "flute", "strings"],
    "mood": ["calm", "happy", "sad", "energetic", "dark", "uplifting", "dreamy", "tense", "romantic", "playful"],
    "tempo": ["slow", "fast", "moderate", "upbeat", "relaxed"],
}
TEMPLATES = [
    "Describe the music in detail including instruments, tempo and mood.",
    "This is a {mood} {genre} piece with {instrument} and a {tempo} tempo.",
    "Generate a {mood} {genre} track for this video, with {instrument} at {n} beats per minute.",
    "Make the {instrument} louder, slow it down and remove the drums.",
    "Here is a music that is {mood} and {tempo}, featuring {instrument}.",
    "What instruments can you hear? I hear {instrument} and {instrument2} in {genre} style.",
    "Compose music for the image: a {mood} scene, {tempo} {genre} with soft {instrument}.",
]


def corpus() -> list[str]:
    """Deterministic training sentences covering the vocabulary of music chat."""
    lines = []
    combos = itertools.product(WORDS["genre"], WORDS["instrument"], WORDS["mood"], WORDS["tempo"])
    for i, (genre, instrument, mood, tempo) in enumerate(combos):
        template = TEMPLATES[i % len(TEMPLATES)]
        other = WORDS["instrument"][(i * 7) % len(WORDS["instrument"])]
        lines.append(template.format(genre=genre, instrument=instrument, instrument2=other, mood=mood,
                                     tempo=tempo, n=60 + i % 120))
    return lines


def main() -> None:
    """Train the SentencePiece model and save it in transformers' tokenizer format."""
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "corpus.txt"
        text.write_text("\n".join(corpus()) + "\n")
        spm.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(Path(tmp) / "sp"), vocab_size=VOCAB_SIZE, model_type="bpe",
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True, character_coverage=1.0,
            num_threads=1, minloglevel=2,
        )
        model_dir = Path(tmp) / "spm"
        model_dir.mkdir()
        shutil.copy(Path(tmp) / "sp.model", model_dir / "tokenizer.model")
        tokenizer = LlamaTokenizer.from_pretrained(str(model_dir))
        if OUT.exists():
            shutil.rmtree(OUT)
        tokenizer.save_pretrained(str(OUT))
    print(f"wrote {OUT} ({len(tokenizer)} tokens)")


if __name__ == "__main__":
    main()
