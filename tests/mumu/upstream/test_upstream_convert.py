"""Published-format checkpoints convert into MuMu checkpoints that reproduce the published forward exactly."""

from __future__ import annotations

import json

import pytest
import torch

from mumu.checkpoint import from_pretrained
from mumu.config import MuMuConfig
from mumu.decoding import GenerationSettings, generate
from mumu.modeling import MediaFeatures
from mumu.prompting import ALPACA_HEADER, Message, build_prompt
from mumu.upstream.convert import REPORT_NAME, convert
from tests.mumu.upstream.published import HEADS, Spec, published_state, save_encoders, save_llm, save_published
from tests.mumu.upstream.reference import Reference


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    return save_encoders(tmp_path_factory.mktemp("encoders"))


def _features(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"music": torch.randn(3, 5, 32, generator=g), "image": torch.randn(17, 32, generator=g),
            "video": torch.randn(65, 32, generator=g)}


def _convert(tmp_path, encoders, spec: Spec, module_prefix=False, edit=None, decoder="facebook/musicgen-small"):
    llm = save_llm(tmp_path / "llm", spec.layers)
    state = published_state(llm, spec, encoders)
    if edit is not None:
        edit(state)
    path = save_published(tmp_path / "checkpoint.pth", state, module_prefix)
    report = convert(path, str(tmp_path / "llm"), tmp_path / "out", mert=str(encoders["mert"]),
                     vit=str(encoders["vit"]), vivit=str(encoders["vivit"]), decoder=decoder)
    model = from_pretrained(tmp_path / "out")
    return state, report, model


def _check_forward(model, ref: Reference, present: tuple[str, ...], seed: int) -> torch.Tensor:
    feats = _features(seed)
    media = MediaFeatures(**{m: [feats[m] if m in present else None] for m in ("music", "image", "video")})
    ref_feats = {"music": ref.music(feats["music"]) if "music" in present else None,
                 "image": ref.tokens("iu_vit", feats["image"]) if "image" in present else None,
                 "video": ref.tokens("iu_vivit", feats["video"]) if "video" in present else None}
    prompt = build_prompt(model.tokenizer, model.ids, [Message("user", "Describe the music in detail")], "m2ugen")
    ids = torch.tensor([prompt])
    with torch.no_grad():
        ours = model(ids, media=media).logits
    theirs, _ = ref.forward(ids, ref_feats)
    assert (ours - theirs).abs().max() < 1e-4
    return ours, media, ref_feats, prompt


LAYOUTS = {
    "grouped-18": (Spec(layers=20, prefix_rows=18), False),
    "summed-20-rnn-module": (Spec(layers=22, prefix_rows=20, rnn=True), True),
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_converted_model_matches_published_forward(tmp_path, encoders, layout):
    spec, module_prefix = LAYOUTS[layout]
    state, report, model = _convert(tmp_path, encoders, spec, module_prefix)
    ref = Reference(state, HEADS, list(model.ids.audio))
    cfg = model.config
    assert cfg.injection.mode == ("summed" if spec.prefix_rows == 20 else "grouped")
    assert cfg.adapter.style == ("m2ugen_rnn" if spec.rnn else "m2ugen")
    assert cfg.pipeline.template == "m2ugen" and cfg.pipeline.stop_rule == "m2ugen"
    assert cfg.pipeline.conditioning == "caption"
    # The published features: MERT's first 60 s, all frames averaged (M2UGen) or each frame to the RNN; ViViT on
    # consecutive frames.
    music = cfg.music_encoder
    assert (music.span, music.window_seconds) == ("first_window", 60.0)
    assert (music.pooling, music.frames_per_step) == (("blocks", 1) if spec.rnn else ("mean", 15))
    assert cfg.video_encoder.frame_sampling == "consecutive"
    assert report.base_from_checkpoint == [] and report.unexpected_keys == []

    # The published prompt: BOS, then the Alpaca text tokenized as one string.
    text = "Describe the music in detail"
    prompt = build_prompt(model.tokenizer, model.ids, [Message("user", text)], cfg.pipeline.template)
    whole = f"{ALPACA_HEADER}### Instruction:\n{text}\n\n### Response:"
    assert prompt == [model.ids.bos, *model.tokenizer(whole, add_special_tokens=False).input_ids]

    with_media, media, ref_feats, prompt = _check_forward(model, ref, ("music", "image", "video"), seed=1)
    without, *_ = _check_forward(model, ref, (), seed=1)
    assert (with_media - without).abs().max() > 1e-3  # the gates are open: the features reach the LLM
    _check_forward(model, ref, ("music",), seed=2)

    # Greedy generation: the same tokens as the published decoding (no cache, stop on "\n###").
    decode = model.tokenizer.decode
    expected = ref.greedy(prompt, ref_feats, 8, decode)
    assert not set(expected) & set(model.ids.audio)
    ours = generate(model, [prompt], media, GenerationSettings(max_new_tokens=8))[0]
    assert ours.token_ids == expected
    assert ours.text == decode(expected).split("\n", 1)[0].strip()

    # The projector reads the published [AUD] states (last layer before the norm, or layer n - 21).
    answer = model.tokenizer("Here is a music", add_special_tokens=False).input_ids
    ids = torch.tensor([prompt + answer + list(model.ids.audio)])
    stream = cfg.projector.streams[0]
    targets = {stream.name: torch.zeros(1, stream.num_tokens, stream.width)}
    with torch.no_grad():
        out = model(ids, media=media, decoder_targets=targets)
    assert (out.projector.raw[stream.name] - ref.projector(ids, ref_feats)).abs().max() < 1e-4


@pytest.mark.slow
def test_base_weights_that_differ_come_from_the_checkpoint(tmp_path, encoders):
    def train_embeddings_and_one_matrix(state):
        state["llama.tok_embeddings.weight"] = (state["llama.tok_embeddings.weight"].float() * 1.5).half()
        state["llama.layers.3.attention.wk.weight"] = (state["llama.layers.3.attention.wk.weight"].float() + 0.1).half()
        state["vit_model.embeddings.cls_token"] = state["vit_model.embeddings.cls_token"] + 1

    spec = Spec(layers=18, prefix_rows=18)
    state, report, model = _convert(tmp_path, encoders, spec, edit=train_embeddings_and_one_matrix)
    assert report.base_from_checkpoint == ["model.embed_tokens.weight", "model.layers.3.self_attn.k_proj.weight"]
    assert report.components["vit"]["differing_keys"] == ["embeddings.cls_token"]
    assert report.components["mert"]["matches"]
    assert any("vit differs" in note for note in report.notes)
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["base_from_checkpoint"] == report.base_from_checkpoint
    _check_forward(model, Reference(state, HEADS, list(model.ids.audio)), ("image",), seed=3)


@pytest.mark.slow
def test_audioldm2_projector_output_is_split_into_both_streams(tmp_path, encoders):
    from generation.audioldm2 import AudioLDM2Decoder
    from mumu.profiles import tiny_decoder

    decoder_dir = tmp_path / "audioldm2"
    AudioLDM2Decoder.from_config(tiny_decoder("audioldm2")).pipe.save_pretrained(decoder_dir)
    spec = Spec(layers=18, prefix_rows=18, decoder="audioldm2", t5_tokens=16)
    state, _, model = _convert(tmp_path, encoders, spec, decoder=str(decoder_dir))
    cfg = MuMuConfig.load(tmp_path / "out")
    assert cfg.decoder.kind == "audioldm2" and cfg.projector.layout == "flat"
    assert [(s.name, s.num_tokens, s.width) for s in cfg.projector.streams] == [
        ("prompt_embeds", 16, 32), ("generated_prompt_embeds", 8, 16)]
    ref = Reference(state, HEADS, list(model.ids.audio))
    prompt = build_prompt(model.tokenizer, model.ids, [Message("user", "music for this")], "m2ugen")
    ids = torch.tensor([prompt + list(model.ids.audio)])
    targets = {"prompt_embeds": torch.zeros(1, 16, 32), "generated_prompt_embeds": torch.zeros(1, 8, 16)}
    with torch.no_grad():
        out = model(ids, decoder_targets=targets)
    flat = ref.projector(ids, {"music": None, "image": None, "video": None})[0, 0]
    assert out.projector.raw["prompt_embeds"].shape == (1, 16, 32)
    assert out.projector.raw["generated_prompt_embeds"].shape == (1, 8, 16)
    assert (out.projector.raw["prompt_embeds"][0] - flat[: 16 * 32].view(16, 32)).abs().max() < 1e-4
    assert (out.projector.raw["generated_prompt_embeds"][0] - flat[16 * 32 :].view(8, 16)).abs().max() < 1e-4
