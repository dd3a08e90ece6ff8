"""Every architecture the profiles use, in one place: the published components and their tiny stand-ins.

As torchtune's `_model_builders.py` holds the numbers of llama2_7b & co. over one component builder, this module
holds the numbers (HF config kwargs) and `mumu/profiles.py` the small builders (tiny, full) over one general builder.
Published archs build the real networks without weights (meta-device parameter counts, `info`); each says where its
numbers come from. Tiny archs keep the real layouts at a size that builds offline in milliseconds.
"""

from __future__ import annotations

from typing import Any

# Published checkpoints ------------------------------------------------------------------------------------------------
LLAMA2_7B = "meta-llama/Llama-2-7b-hf"
MERT_V1_330M = "m-a-p/MERT-v1-330M"
VIT_B16 = "google/vit-base-patch16-224"
VIVIT_B16X2 = "google/vivit-b-16x2-kinetics400"
AUDIOLDM2_MUSIC = "cvssp/audioldm2-music"
MUSICGEN_CHECKPOINTS = {"small": "facebook/musicgen-small", "medium": "facebook/musicgen-medium",
                        "large": "facebook/musicgen-large", "melody": "facebook/musicgen-melody"}
MUSICGEN_SIZES = ("small", "medium", "large")

# LLM ------------------------------------------------------------------------------------------------------------------
# Llama-2-7B's config.json (the sizes torchtune's llama2_7b builder also spells out).
LLAMA2_7B_ARCH: dict[str, Any] = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2,
)
# initializer_range: Llama's 0.02 is sized for 4096-wide layers; at width 64 it leaves attention uniform, so context
# barely reaches later positions and the tiny model cannot learn from what it reads (bench/learning_probe.py).
TINY_LLAMA_ARCH: dict[str, Any] = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=7, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.2,
)

# Music encoder --------------------------------------------------------------------------------------------------------
# MERT-v1-330M as a HuBERT-large-like stack, from m-a-p/MERT-v1-330M's config.json (checked against the public
# config: see shared/reference/landscape.md, "Real checkpoint layouts"): conv_bias false, feat_extract_norm "group",
# pre-LN layers, no DeepNorm, mask_time_prob 0.075 (so the checkpoint's masked_spec_embed has a place to load),
# layer_norm_eps 1e-5. attention_relax 32 only applies inside DeepNorm layers, which this model does not use. When
# the checkpoint itself is loaded, its own config.json is read instead.
MERT_V1_330M_ARCH: dict[str, Any] = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    conv_dim=(512,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    conv_bias=False,
    feat_extract_norm="group",
    feat_proj_layer_norm=True,
    do_stable_layer_norm=True,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    mask_time_prob=0.075,
    layer_norm_eps=1e-5,
    deepnorm=False,
    attention_relax=32.0,
    sample_rate=24_000,
)
# Same architecture family, small enough to build in milliseconds.
TINY_MERT_ARCH: dict[str, Any] = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4, feat_extract_norm="group", feat_proj_layer_norm=True,
    do_stable_layer_norm=False, mask_time_prob=0.0,
)

# Image and video encoders ---------------------------------------------------------------------------------------------
# ViT-B/16 at 224 px: transformers' ViTConfig defaults are documented as google/vit-base-patch16-224's architecture;
# 1 + 14 * 14 = 197 tokens of width 768.
VIT_B16_ARCH: dict[str, Any] = dict(
    image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True,
)
# ViViT-B/16x2: transformers' VivitConfig defaults are documented as google/vivit-b-16x2-kinetics400's architecture;
# 32 frames at 224 px in 2x16x16 tubelets, 1 + 16 * 14 * 14 = 3137 tokens of width 768.
VIVIT_B16X2_ARCH: dict[str, Any] = dict(
    image_size=224, num_frames=32, tubelet_size=[2, 16, 16], hidden_size=768, num_hidden_layers=12,
    num_attention_heads=12, intermediate_size=3072, hidden_act="gelu_fast", layer_norm_eps=1e-6, qkv_bias=True,
)
# 1 + 4 x 4 = 17 and 1 + 4 x 4 x 4 = 65 tokens.
TINY_VIT_ARCH: dict[str, Any] = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
)
TINY_VIVIT_ARCH: dict[str, Any] = dict(
    image_size=32, num_frames=8, tubelet_size=[2, 8, 8], hidden_size=32, num_hidden_layers=2,
    num_attention_heads=2, intermediate_size=64,
)

# MusicGen -------------------------------------------------------------------------------------------------------------
# t5-base as the text encoder (from its config.json; MusicGen uses only the encoder stack).
T5_BASE: dict[str, Any] = {
    "vocab_size": 32128, "d_model": 768, "d_kv": 64, "d_ff": 3072, "num_layers": 12, "num_decoder_layers": 12,
    "num_heads": 12, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "feed_forward_proj": "relu", "layer_norm_epsilon": 1e-6, "dropout_rate": 0.1, "pad_token_id": 0,
    "eos_token_id": 1, "decoder_start_token_id": 0,
}
# facebook/encodec_32khz as embedded in the MusicGen configs (checked against a published copy of that config):
# 32 kHz / (8*5*4*4) = 50 frames/s; 2.2 kbps / (50 Hz * 11 bits) = 4 codebooks of 2048.
ENCODEC_32KHZ: dict[str, Any] = {
    "sampling_rate": 32000, "audio_channels": 1, "target_bandwidths": [2.2], "upsampling_ratios": [8, 5, 4, 4],
    "codebook_size": 2048, "codebook_dim": 128, "hidden_size": 128, "num_filters": 64, "num_residual_layers": 1,
    "num_lstm_layers": 2, "kernel_size": 7, "last_kernel_size": 7, "residual_kernel_size": 3, "dilation_growth_rate": 2,
    "compress": 2, "norm_type": "weight_norm", "pad_mode": "reflect", "use_causal_conv": False,
    "use_conv_shortcut": False, "normalize": False, "trim_right_ratio": 1.0, "chunk_length_s": None, "overlap": None,
}


def _musicgen_lm(hidden: int, layers: int, heads: int) -> dict[str, Any]:
    # The decoder config transformers' MusicGen converters write (decoder_config_from_checkpoint in
    # convert_musicgen_transformers.py and convert_musicgen_melody_transformers.py): ffn 4 x hidden, 4 codebooks of
    # 2048 codes, pad/BOS = 2048 (one past the codebook), MusicgenDecoderConfig's defaults for the rest.
    return {"vocab_size": 2048, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "ffn_dim": 4 * hidden, "num_codebooks": 4, "max_position_embeddings": 2048, "activation_function": "gelu",
            "dropout": 0.1, "attention_dropout": 0.0, "activation_dropout": 0.0, "scale_embedding": False,
            "tie_word_embeddings": False, "audio_channels": 1, "pad_token_id": 2048, "bos_token_id": 2048}


# Decoder sizes per checkpoint, from the same converters: small 1024 x 24 layers (16 heads), medium 1536 x 48 (24),
# large 2048 x 48 (32); melody is medium-sized (facebook/musicgen-melody: 1536 x 48, 24 heads) with
# MusicgenMelodyConfig's 12 chroma bins over 235 frames. They give the published totals: 587M, 2.0B, 3.4B, 1.55B
# (LM 420M / 1.84B / 3.26B / 1.38B; tests/generation/test_musicgen.py counts them).
MUSICGEN_ARCHS: dict[str, dict[str, Any]] = {
    "small": {"text_encoder": T5_BASE, "audio_encoder": ENCODEC_32KHZ, "decoder": _musicgen_lm(1024, 24, 16)},
    "medium": {"text_encoder": T5_BASE, "audio_encoder": ENCODEC_32KHZ, "decoder": _musicgen_lm(1536, 48, 24)},
    "large": {"text_encoder": T5_BASE, "audio_encoder": ENCODEC_32KHZ, "decoder": _musicgen_lm(2048, 48, 32)},
    "melody": {"text_encoder": T5_BASE, "audio_encoder": ENCODEC_32KHZ, "decoder": _musicgen_lm(1536, 48, 24),
               "num_chroma": 12, "chroma_length": 235},
}

_TINY_TEXT = {"vocab_size": 520, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4}
# 8 kHz, hop 8*8 = 64 -> 125 frames/s; 3 kbps / (125 Hz * 6 bits) = 4 quantizers = decoder.num_codebooks.
_TINY_CODEC = {"sampling_rate": 8000, "target_bandwidths": [3.0], "hidden_size": 16, "num_filters": 4,
               "num_residual_layers": 1, "upsampling_ratios": [8, 8], "codebook_size": 64, "num_lstm_layers": 1,
               "use_causal_conv": False, "normalize": False}
# initializer_factor 0.3 (default 0.02): at the default the random logits are ~0 and samples barely follow the
# conditioning, so tests could not see guidance, melody or embeddings at work.
_TINY_MUSICGEN_LM = {"vocab_size": 64, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "ffn_dim": 96, "num_codebooks": 4, "max_position_embeddings": 2048, "pad_token_id": 64,
                     "bos_token_id": 64, "initializer_factor": 0.3}
TINY_MUSICGEN_ARCH: dict[str, Any] = {"text_encoder": _TINY_TEXT, "audio_encoder": _TINY_CODEC,
                                      "decoder": _TINY_MUSICGEN_LM}
TINY_MUSICGEN_MELODY_ARCH: dict[str, Any] = {**TINY_MUSICGEN_ARCH, "num_chroma": 12, "chroma_length": 235}

# AudioLDM2 ------------------------------------------------------------------------------------------------------------
# Random-init test pipeline. T5 width 32 and GPT-2 width 16 match the tiny output projector's streams; vocabularies
# cover the tiny Llama tokenizer (512 ids + a few added). Vocoder hop 5*4*8 = 160 samples = 10 ms frames, as the real
# one.
TINY_AUDIOLDM2_ARCH: dict[str, Any] = {
    "init_seed": 0,
    "lm_tokens": 8,
    "tokenizer_max_length": {"clap": 64, "t5": 128},
    "unet": {
        "sample_size": 32, "in_channels": 4, "out_channels": 4, "block_out_channels": (8, 16), "layers_per_block": 1,
        "norm_num_groups": 8, "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        # per block: [self-attention, GPT-2 width, T5 width]
        "cross_attention_dim": ([None, 16, 32], [None, 16, 32]),
    },
    "vae": {
        "in_channels": 1, "out_channels": 1, "latent_channels": 4, "block_out_channels": (8, 16), "norm_num_groups": 8,
        "down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2,
    },
    "clap": {
        "projection_dim": 16,
        "text": {"vocab_size": 520, "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
                 "num_hidden_layers": 1, "max_position_embeddings": 80, "pad_token_id": 0, "bos_token_id": 1,
                 "eos_token_id": 2, "projection_dim": 16},
        "audio": {"spec_size": 16, "num_mel_bins": 8, "window_size": 4, "depths": [1, 1], "num_attention_heads": [1, 1],
                  "num_hidden_layers": 1, "hidden_size": 32, "patch_embeds_hidden_size": 16, "intermediate_size": 32,
                  "patch_size": 2, "patch_stride": 2, "projection_dim": 16},
    },
    # 1 s windows of 26 frames <= spec_size * (spec_size // num_mel_bins) = 32; 'fusion' truncation hard-codes 64 mels
    "feature_extractor": {"feature_size": 8, "sampling_rate": 16000, "hop_length": 640, "max_length_s": 1,
                          "fft_window_size": 1024, "truncation": "rand_trunc"},
    "t5": {"vocab_size": 520, "d_model": 32, "d_ff": 37, "d_kv": 8, "num_heads": 2, "num_layers": 2},
    # positions for the longest prompt the tokenizers let through: 4 boundary tokens + CLAP (1) + T5 (128) + 8 generated
    "gpt2": {"n_embd": 16, "n_head": 2, "n_layer": 2, "vocab_size": 520, "n_positions": 160, "bos_token_id": 1,
             "eos_token_id": 2},
    "projection": {"text_encoder_dim": 16, "text_encoder_1_dim": 32, "langauge_model_dim": 16},
    "vocoder": {"model_in_dim": 8, "sampling_rate": 16000, "upsample_initial_channel": 16, "upsample_rates": [5, 4, 8],
                "upsample_kernel_sizes": [10, 8, 16], "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3]],
                # the 0.01 default makes a random vocoder output ~1e-7: silence, which every CLAP score ties on
                "normalize_before": False, "initializer_range": 0.2},
    "scheduler": {"beta_start": 0.0015, "beta_end": 0.0195, "beta_schedule": "scaled_linear", "clip_sample": False,
                  "set_alpha_to_one": False},
}

# cvssp/audioldm2-music sizes for parameter counting on the meta device (weights=False). Sourced from diffusers'
# scripts/convert_original_audioldm2_to_diffusers.py (DEFAULT_CONFIG + the components it loads): UNet
# model_channels 128, channel_mult [1,2,3,5], attention at 2/4/8, 2 res blocks, context [768, 1024]; VAE ch 128,
# ch_mult [1,2,4], z 8; HiFi-GAN; CLAP = laion/clap-htsat-unfused, T5 = flan-t5-large encoder, GPT-2 base,
# 8 generated tokens, T5 tokenizer max length 128. The UNet block is as in the published unet/config.json
# (cvssp/audioldm2's, and a copy of cvssp/audioldm2-music's): sample_size 256, block_out_channels [128, 256, 384, 640],
# attention_head_dim 8 (diffusers reads it as the number of heads), cross_attention_dim [null, 768, 1024] per block.
# Not checked against a published file: the CLAP/flan-T5/GPT-2 hyper-parameters spelled out below and the feature
# extractor settings. The totals match the published sizes (UNet 350M, 1.1B in all): 346.9M UNet, 1.078B.
AUDIOLDM2_MUSIC_ARCH: dict[str, Any] = {
    "init_seed": 0,
    "lm_tokens": 8,
    "tokenizer_max_length": {"clap": 512, "t5": 128},
    "unet": {
        "sample_size": 256, "in_channels": 8, "out_channels": 8, "block_out_channels": (128, 256, 384, 640),
        "layers_per_block": 2, "attention_head_dim": 8,
        "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
        "up_block_types": ("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",),
        "cross_attention_dim": ([None, 768, 1024],) * 4,
    },
    "vae": {
        "in_channels": 1, "out_channels": 1, "latent_channels": 8, "block_out_channels": (128, 256, 512),
        "layers_per_block": 2, "down_block_types": ("DownEncoderBlock2D",) * 3,
        "up_block_types": ("UpDecoderBlock2D",) * 3,
    },
    "clap": {
        "projection_dim": 512,
        "text": {"vocab_size": 50265, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                 "num_hidden_layers": 12, "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1,
                 "bos_token_id": 0, "eos_token_id": 2, "projection_dim": 512},
        "audio": {"spec_size": 256, "num_mel_bins": 64, "window_size": 8, "depths": [2, 2, 6, 2],
                  "num_attention_heads": [4, 8, 16, 32], "hidden_size": 768, "patch_embeds_hidden_size": 96,
                  "patch_size": 4, "patch_stride": [4, 4], "enable_fusion": False, "projection_dim": 512},
    },
    "feature_extractor": {"feature_size": 64, "sampling_rate": 48000, "hop_length": 480, "max_length_s": 10,
                          "fft_window_size": 1024, "truncation": "rand_trunc"},
    "t5": {"vocab_size": 32128, "d_model": 1024, "d_ff": 2816, "d_kv": 64, "num_heads": 16, "num_layers": 24,
           "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
    "gpt2": {"n_embd": 768, "n_head": 12, "n_layer": 12, "vocab_size": 50257, "n_positions": 1024},
    "projection": {"text_encoder_dim": 512, "text_encoder_1_dim": 1024, "langauge_model_dim": 768},
    "vocoder": {"model_in_dim": 64, "sampling_rate": 16000, "upsample_initial_channel": 1024,
                "upsample_rates": [5, 4, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 8, 4, 4],
                "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
                "normalize_before": False},
    "scheduler": {"beta_start": 0.0015, "beta_end": 0.0195, "beta_schedule": "scaled_linear", "clip_sample": False,
                  "set_alpha_to_one": False},
}
