"""Log-likelihood of candidate continuations under the model, given a prompt and media (multiple choice)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from media.errors import MediaError
from mumu.eval.runner import SkipItem
from mumu.feature_cache import FeatureCache, encode_file
from mumu.modeling import MediaFeatures, MuMuModel
from mumu.prompting import Message, build_prompt
from mumu.tokens import encode_text


@dataclass
class OptionScore:
    """Sum of the option's token log-probabilities and its token count."""

    logprob: float
    tokens: int

    @property
    def per_token(self) -> float:
        """Mean log-probability per token (removes the preference for short options)."""
        return self.logprob / max(self.tokens, 1)


class OptionScorer:
    """Scores each option's tokens after the prompt, with the item's music features injected."""

    def __init__(self, model: MuMuModel, batch_size: int = 4, cache_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.model, self.batch_size = model, batch_size
        self._features = FeatureCache(cache_size)

    def music(self, path: str | None) -> torch.Tensor:
        """MERT features of an audio file (cached by path); SkipItem when it is missing or unreadable."""
        if path is None:
            raise SkipItem("no audio file found for this item under --media-root")
        cached = self._features.get(path)
        if cached is not None:
            return cached
        if not Path(path).is_file():
            raise SkipItem(f"audio file missing: {path}")
        try:
            features = encode_file(self.model, "music", path, self.model.config.limits)
        except MediaError as e:
            raise SkipItem(f"audio unreadable: {e}") from e
        self._features.put(path, features)
        return features

    def prompt_ids(self, text: str) -> list[int]:
        """The user turn as the model's chat template renders it, ending where the reply starts."""
        cfg = self.model.config.pipeline
        return build_prompt(self.model.tokenizer, self.model.ids, [Message("user", text)], cfg.template, cfg.system)

    @torch.no_grad()
    def score(self, prompt: str, options: list[str], music: torch.Tensor | None) -> list[OptionScore]:
        """Log-likelihood of each option as the reply to `prompt`, in batches of at most batch_size rows."""
        head = self.prompt_ids(prompt)
        tails = [encode_text(self.model.tokenizer, option) for option in options]
        if not all(tails):
            raise ValueError(f"an option encodes to no tokens: {options}")
        scores: list[OptionScore] = []
        for start in range(0, len(tails), self.batch_size):
            scores += self._batch(head, tails[start:start + self.batch_size], music)
        return scores

    def _batch(self, head: list[int], tails: list[list[int]], music: torch.Tensor | None) -> list[OptionScore]:
        rows = [head + tail for tail in tails]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self.model.ids.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, row in enumerate(rows):  # right padding: the scored positions never see a pad token
            ids[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
        media = MediaFeatures(music=[music] * len(rows)) if music is not None else None
        device = self.model.device
        logits = self.model(ids.to(device), attention_mask=mask.to(device), media=media).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        out = []
        for r, tail in enumerate(tails):
            positions = torch.arange(len(head) - 1, len(head) - 1 + len(tail), device=logp.device)
            picked = logp[r, positions, torch.tensor(tail, device=logp.device)]
            out.append(OptionScore(float(picked.sum()), len(tail)))
        return out
