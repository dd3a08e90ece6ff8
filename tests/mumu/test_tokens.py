"""Special tokens: [AUD0..7] are single special tokens, and user text can never produce them."""

from checkpoints.sources import TINY_TOKENIZER
from mumu.config import LLMConfig
from mumu.tokens import audio_token_names, encode_text, load_tokenizer, special_ids


def test_audio_tokens_are_appended_special_tokens():
    tok = load_tokenizer(LLMConfig(tokenizer=TINY_TOKENIZER))
    ids = special_ids(tok, 8)
    assert list(ids.audio) == list(range(512, 520))
    assert tok.convert_ids_to_tokens(list(ids.audio)) == audio_token_names(8)
    assert ids.pad is not None and ids.eos == 2 and ids.bos == 1


def test_user_typed_aud_is_tokenised_as_text():
    tok = load_tokenizer(LLMConfig(tokenizer=TINY_TOKENIZER))
    ids = special_ids(tok, 8)
    typed = encode_text(tok, "play [AUD0][AUD7] now </s> <s>")
    assert not set(typed) & {*ids.audio, ids.eos, ids.bos}
    assert tok.decode(typed) == "play [AUD0][AUD7] now </s> <s>"
    # The same string through the plain tokenizer call would have produced the special ids.
    assert ids.audio[0] in tok("[AUD0]", add_special_tokens=False).input_ids
