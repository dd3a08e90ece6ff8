"""Tiny random stand-ins for the evaluation's reference models, saved as local from_pretrained directories."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    AutoTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    RobertaConfig,
    RobertaModel,
)

from adapters.mert import MusicEncoder
from checkpoints.sources import resolve_source
from mumu.builder import seeded
from mumu.profiles import TINY_TOKENIZER, tiny

AST_FRAMES = 128  # 1.28 s windows


def save_clap(directory: Path) -> Path:
    """A small CLAP (RoBERTa text tower, HTS-AT audio tower) with the tiny profile's tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(TINY_TOKENIZER))
    config = ClapConfig(
        text_config={"vocab_size": len(tokenizer) + 8, "hidden_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 48, "max_position_embeddings": 80,
                     "pad_token_id": tokenizer.pad_token_id or 0, "projection_dim": 16},
        audio_config={"depths": [1, 1], "num_attention_heads": [2, 2], "hidden_size": 32,
                      "patch_embeds_hidden_size": 16, "projection_dim": 16, "enable_fusion": False},
        projection_dim=16)
    with seeded(3):
        model = ClapModel(config)
    model.save_pretrained(directory)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_mert(directory: Path) -> Path:
    """The tiny profile's MERT architecture with random weights."""
    with seeded(4):
        encoder = MusicEncoder.from_config(tiny().music_encoder)
    encoder.model.save_pretrained(directory)
    encoder.processor.save_pretrained(directory)
    return directory


def save_ast(directory: Path) -> Path:
    """A small AST audio tagger over 1.28 s windows with 6 classes."""
    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                       max_length=AST_FRAMES, num_mel_bins=128, num_labels=6)
    with seeded(5):
        model = ASTForAudioClassification(config)
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=AST_FRAMES).save_pretrained(directory)
    return directory


def save_roberta(directory: Path) -> Path:
    """A 2-layer RoBERTa with the tiny profile's tokenizer, for BERTScore."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(TINY_TOKENIZER), model_max_length=128)
    tokenizer.pad_token = tokenizer.unk_token
    config = RobertaConfig(vocab_size=len(tokenizer) + 8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=48, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id)
    with seeded(6):
        model = RobertaModel(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_reference_models(directory: Path) -> dict[str, str]:
    """CLAP, MERT and AST under `directory`; returns {'clap', 'mert', 'tagger'} -> path."""
    return {"clap": str(save_clap(directory / "clap")), "mert": str(save_mert(directory / "mert")),
            "tagger": str(save_ast(directory / "ast"))}
