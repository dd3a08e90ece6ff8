"""Prefix caching: what is found and kept, and decoding that reuses it gives what decoding the whole prompt gives."""

from __future__ import annotations

import pytest
import torch

from mumu.config import PipelineConfig
from mumu.decoding import DecodeRequest, GenerationSettings, decode
from mumu.modeling import MediaFeatures
from mumu.pipeline import ChatOptions, MuMuPipeline
from mumu.prefix_cache import PrefixCache, media_key
from tests.mumu.conftest import media_for, open_gates, prompt_ids

NO_MEDIA = media_key({"music": None}, 0)  # the media key of a row without music, for a model with music only


def _kv(tokens, layers=2, heads=2, dim=4, fill=None):
    """Per layer (heads, length, dim) keys and values whose entries encode the token (and the layer)."""
    base = torch.tensor(tokens, dtype=torch.float32)[None, :, None] if fill is None else torch.full((1, 1, 1), fill)
    return [((base + layer).expand(heads, len(tokens), dim).clone(), (base - layer).expand(heads, len(tokens),
                                                                                           dim).clone())
            for layer in range(layers)]


def test_lookup_finds_the_longest_common_prefix_and_leaves_the_last_token_to_feed():
    cache = PrefixCache(100)
    cache.store([1, 2, 3, 4, 5], _kv([1, 2, 3, 4, 5]), NO_MEDIA)
    cache.store([1, 2, 9], _kv([1, 2, 9]), NO_MEDIA)
    found = cache.lookup([1, 2, 3, 7, 8], NO_MEDIA)
    assert found.length == 3
    torch.testing.assert_close(found.kv[1][0], _kv([1, 2, 3])[1][0])
    assert cache.lookup([1, 2, 3, 4, 5], NO_MEDIA).length == 4  # the whole prompt held: its last token is fed
    assert cache.lookup([7, 1, 2], NO_MEDIA) is None
    assert cache.lookup([1], NO_MEDIA) is None
    assert cache.lookups == 4 and cache.reused_tokens == 7


def test_entries_are_kept_per_media_key():
    cache = PrefixCache(100)
    with_music = (("music", "abc"),)
    cache.store([1, 2, 3], _kv([1, 2, 3]), with_music)
    assert cache.lookup([1, 2, 3, 4], NO_MEDIA) is None
    assert cache.lookup([1, 2, 3, 4], with_music).length == 3


def test_a_longer_sequence_replaces_the_entry_it_extends_and_a_held_prefix_is_not_stored_again():
    cache = PrefixCache(100)
    cache.store([1, 2], _kv([1, 2]), NO_MEDIA)
    cache.store([1, 2, 3, 4], _kv([1, 2, 3, 4]), NO_MEDIA)
    assert len(cache) == 1
    cache.store([1, 2, 3], _kv([1, 2, 3]), NO_MEDIA)
    assert len(cache) == 1 and cache.lookup([1, 2, 3, 4, 5], NO_MEDIA).length == 4
    assert cache.tokens == 4


def test_the_least_recently_used_entries_go_when_the_tokens_run_out():
    cache = PrefixCache(6)
    cache.store([1, 2, 3], _kv([1, 2, 3]), NO_MEDIA)
    cache.store([4, 5, 6], _kv([4, 5, 6]), NO_MEDIA)
    cache.lookup([1, 2, 3, 0], NO_MEDIA)  # [1, 2, 3] is now the more recently used
    cache.store([7, 8, 9], _kv([7, 8, 9]), NO_MEDIA)
    assert cache.tokens == 6
    assert cache.lookup([4, 5, 6, 0], NO_MEDIA) is None
    assert cache.lookup([1, 2, 3, 0], NO_MEDIA).length == 3 and cache.lookup([7, 8, 9, 0], NO_MEDIA).length == 3
    cache.store(list(range(10)), _kv(list(range(10))), NO_MEDIA)  # larger than the whole cache: not kept
    assert cache.lookup(list(range(11)), NO_MEDIA) is None and len(cache) == 2


def test_the_size_is_checked():
    for size in (-1, 0):
        with pytest.raises(ValueError, match="prefix cache's size is"):
            PrefixCache(size)
    with pytest.raises(ValueError, match="prefix_cache_tokens"):
        PipelineConfig(prefix_cache_tokens=-1)


def test_media_keys_follow_the_rows_adapter_tokens_and_ignore_absent_rows(model):
    open_gates(model)
    media = media_for(model, seed=3, rows=2, image=False, video=False)
    media.music[1] = None
    inputs = model.modality_inputs(media, 2)
    again = model.modality_inputs(MediaFeatures(music=[media.music[0]], image=[None], video=[None]), 1)
    assert media_key(inputs, 0) == media_key(again, 0)
    assert media_key(inputs, 1) == media_key(model.modality_inputs(None, 1), 0)
    other = model.modality_inputs(media_for(model, seed=4, image=False, video=False), 1)
    assert media_key(other, 0) != media_key(inputs, 0)


def _decode(model, prompts, media=None, cache=None, **settings):
    media = media or [None] * len(prompts)
    requests = [DecodeRequest(p, m, GenerationSettings(music="never", **settings))
                for p, m in zip(prompts, media, strict=True)]
    return [r.token_ids for r in decode(model, requests, prefix_cache=cache)]


def _forwards(model):
    shapes = []
    handle = model.llm.get_input_embeddings().register_forward_hook(
        lambda m, args, out: shapes.append(tuple(out.shape[:2])))
    return shapes, handle


def test_a_prompt_reusing_a_held_prefix_feeds_only_the_rest_and_decodes_the_same(model):
    first = prompt_ids(model, "Describe the music in detail")
    second = prompt_ids(model, "Describe the music of a rainy afternoon")
    shared = _common(first, second)
    expected = _decode(model, [second], max_new_tokens=12)
    cache = PrefixCache(4096)
    _decode(model, [first], cache=cache, max_new_tokens=12)
    shapes, handle = _forwards(model)
    try:
        assert _decode(model, [second], cache=cache, max_new_tokens=12) == expected
    finally:
        handle.remove()
    assert shapes[0] == (1, len(second) - shared)  # the prefill fed only what follows the shared prefix
    sampled = dict(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=5)
    assert _decode(model, [second], cache=cache, **sampled) == _decode(model, [second], **sampled)


def test_rows_reusing_prefixes_of_different_lengths_decode_as_one_batch_like_each_alone(model):
    open_gates(model)
    held = prompt_ids(model, "Describe the music in detail, please")
    prompts = [prompt_ids(model, "Describe the music in detail"), prompt_ids(model, "Describe it"),
               prompt_ids(model, "What instruments play here?")]
    media = [None, media_for(model, seed=2), None]
    alone = [_decode(model, [p], [m], max_new_tokens=10)[0] for p, m in zip(prompts, media, strict=True)]
    cache = PrefixCache(4096)
    _decode(model, [held], cache=cache, max_new_tokens=10)
    before = cache.reused_tokens
    assert _decode(model, prompts, media, cache=cache, max_new_tokens=10) == alone
    # Row 0 is held whole: it reuses all of it but the last token. The row with media reuses nothing (its keys and
    # values differ), the third row its BOS.
    assert _common(held, prompts[0]) == len(prompts[0])
    assert cache.reused_tokens - before == len(prompts[0]) - 1 + 0 + 1


def _common(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def test_kept_keys_and_values_are_those_of_a_fresh_forward_over_the_sequence(model):
    cache = PrefixCache(4096)
    prompt = prompt_ids(model)
    tokens = _decode(model, [prompt], cache=cache, max_new_tokens=6)[0]
    sequence = [*prompt, *tokens[:-1]]  # the last token was chosen, never fed
    found = cache.lookup([*sequence, 0], media_key(model.modality_inputs(None, 1), 0))
    assert found.length == len(sequence)
    with model.injection.inject(model.modality_inputs(None, 1), 1), torch.no_grad():
        fresh = model.llm(input_ids=torch.tensor([sequence]), use_cache=True).past_key_values
    for (keys, values), layer in zip(found.kv, fresh.layers, strict=True):
        torch.testing.assert_close(keys, layer.keys[0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(values, layer.values[0], rtol=1e-4, atol=1e-5)


def test_a_conversations_next_turn_reuses_its_earlier_prompt_and_reply(tmp_path):
    pipelines = [MuMuPipeline.from_profile("tiny", out_dir=tmp_path / name) for name in ("on", "off")]
    pipelines[1].scheduler.prefix_cache = None
    prompts = []
    submit = pipelines[0].scheduler.submit
    pipelines[0].scheduler.submit = lambda prompt, *args, **kw: prompts.append(prompt) or submit(prompt, *args, **kw)
    options = ChatOptions(music="never", max_new_tokens=12)
    replies = []
    for pipe in pipelines:
        conv = pipe.new_conversation()
        replies.append([pipe.chat(conv, text, options=options).text
                        for text in ("Describe a calm piano piece", "Now make it faster", "And louder?")])
    assert replies[0] == replies[1]
    cache = pipelines[0].scheduler.prefix_cache
    # Turns 2 and 3 reuse at least the whole prompt of the turn before (its reply too, as far as it tokenises alike).
    assert cache.lookups == 3 and cache.reused_tokens >= len(prompts[0]) + len(prompts[1])
    assert _common(prompts[0], prompts[1]) == len(prompts[0])
