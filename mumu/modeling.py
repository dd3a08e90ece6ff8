"""MuMuModel: frozen encoders -> understanding adapters -> gated injection into a LoRA Llama -> output projector."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch import nn
from transformers import PreTrainedTokenizerBase

from adapters.mert import MusicEncoder
from adapters.standardize import FeatureStandardizer
from adapters.styles import build_adapters
from adapters.vision import ImageEncoder, VideoEncoder
from mumu.config import MODALITIES, MuMuConfig
from mumu.injection import GatedInjection, ModalityInput
from mumu.projector import OutputProjector, ProjectorOutput
from mumu.tokens import SpecialIds


@dataclass
class MediaFeatures:
    """Frozen-encoder outputs for a batch, one entry per row (None where that row lacks the modality).

    music: (layers, steps, width) per clip; image: (tokens, width); video: (tokens, width).
    """

    music: list[torch.Tensor | None] = field(default_factory=list)
    image: list[torch.Tensor | None] = field(default_factory=list)
    video: list[torch.Tensor | None] = field(default_factory=list)


@dataclass
class MuMuOutput:
    """Losses reported separately (loss = ce + mse_weight * (mse + mask), the parts whose targets are given)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    ce_loss: torch.Tensor | None = None
    mse_loss: torch.Tensor | None = None
    mask_loss: torch.Tensor | None = None
    projector: ProjectorOutput | None = None


TrainedPart = Literal["adapters", "injection", "projector", "lora", "audio_tokens", "norms", "llm_params"]
OWN_MODULES: dict[str, TrainedPart] = {"music_adapter": "adapters", "image_adapter": "adapters",
                                       "video_adapter": "adapters", "standardizers": "adapters",
                                       "injection": "injection", "projector": "projector"}


def _llm_part(name: str, extra: list[str]) -> TrainedPart | None:
    """Which trained part an LLM parameter belongs to (None: a frozen base weight)."""
    if "lora_" in name:
        return "lora"
    if "trainable_tokens_" in name:
        return "audio_tokens"
    # The LLM's RMSNorm scales train with LoRA (as in the paper): a frozen final norm caps how sharp the logits of
    # a frozen LM head can get.
    if name.endswith("norm.weight"):
        return "norms"
    if any(fnmatchcase(name, pattern) for pattern in extra):
        return "llm_params"
    return None


class MuMuModel(nn.Module):
    """The whole multimodal model; decoders live in generation/ and read `projector` outputs."""

    def __init__(
        self,
        config: MuMuConfig,
        ids: SpecialIds,
        music_encoder: MusicEncoder,
        image_encoder: ImageEncoder,
        video_encoder: VideoEncoder,
        llm: PeftModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.ids = ids
        self.music_encoder, self.image_encoder, self.video_encoder = music_encoder, image_encoder, video_encoder
        self.llm = llm
        acfg = config.adapter
        self.music_adapter, self.image_adapter, self.video_adapter = build_adapters(
            acfg, music_encoder, image_encoder, video_encoder)
        # Empty unless adapter.standardize: then one per modality, whose statistics are saved with the adapters.
        self.standardizers = nn.ModuleDict({
            "music": FeatureStandardizer(music_encoder.num_layers_out, music_encoder.width),
            "image": FeatureStandardizer(None, image_encoder.width),
            "video": FeatureStandardizer(None, video_encoder.width)} if acfg.standardize else {})
        llm_config = llm.get_base_model().config
        if llm_config.hidden_size != acfg.llm_width:
            raise ValueError(f"adapter.llm_width={acfg.llm_width} but the LLM is {llm_config.hidden_size} wide")
        self.injection = GatedInjection(llm_config, config.injection, acfg.num_tokens)
        self.injection.attach(self.decoder_layers)
        self.projector = OutputProjector(llm_config.hidden_size, config.projector)
        for pattern in config.trainable.llm_params:
            if not any(fnmatchcase(name, pattern) for name, _ in llm.named_parameters()):
                raise ValueError(f"trainable.llm_params pattern {pattern!r} matches no LLM parameter")

    def train(self, mode: bool = True) -> MuMuModel:
        """Train mode for what learns; the frozen encoders stay in eval mode (no dropout noise in features)."""
        super().train(mode)
        for encoder in (self.music_encoder, self.image_encoder, self.video_encoder):
            encoder.eval()
        return self

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The Llama decoder layers (inside the peft wrapper)."""
        return self.llm.get_base_model().model.layers

    @property
    def projector_source(self) -> nn.Module:
        """The LLM module whose output the projector reads: the final norm, or decoder layer projector.llm_layer."""
        layer = self.config.projector.llm_layer
        return self.llm.get_base_model().model.norm if layer is None else self.decoder_layers[layer]

    @property
    def audio_ids(self) -> torch.Tensor:
        """The [AUD0..n] token ids as a tensor."""
        return torch.tensor(self.ids.audio, device=self.device)

    @property
    def device(self) -> torch.device:
        """Device of the LLM weights."""
        return self.llm.get_base_model().model.embed_tokens.weight.device

    def modality_inputs(self, media: MediaFeatures | None, batch: int) -> dict[str, ModalityInput | None]:
        """Run each adapter over the rows that have its modality; absent modalities give None."""
        media = media or MediaFeatures()
        adapters = {"music": self.music_adapter, "image": self.image_adapter, "video": self.video_adapter}
        result: dict[str, ModalityInput | None] = {}
        for name in MODALITIES:
            items = getattr(media, name)
            if items and len(items) != batch:
                raise ValueError(f"{name} features have {len(items)} rows, the batch has {batch}")
            rows = [i for i, item in enumerate(items) if item is not None]
            if not rows:
                result[name] = None
                continue
            present = [self._standardized(name, items[i].to(self.device)) for i in rows]
            tokens = adapters[name](present if name == "music" else torch.stack(present))
            full = tokens.new_zeros(batch, *tokens.shape[1:])
            full[rows] = tokens
            mask = torch.zeros(batch, dtype=torch.bool, device=self.device)
            mask[rows] = True
            result[name] = ModalityInput(full, mask)
        return result

    def _standardized(self, modality: str, features: torch.Tensor) -> torch.Tensor:
        return self.standardizers[modality](features) if modality in self.standardizers else features

    def fit_standardizers(self, features: dict[str, Iterable[torch.Tensor]]) -> dict[str, int]:
        """Fit the feature statistics that are not fitted yet from training features (modality -> clips or
        token sets); returns the feature vectors each fitted one saw. Fitted statistics are kept: a later stage
        standardises exactly as the one that trained the adapters."""
        return {m: self.standardizers[m].fit(features[m]) for m in features
                if m in self.standardizers and not self.standardizers[m].fitted}

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        media: MediaFeatures | None = None,
        decoder_targets: dict[str, torch.Tensor] | None = None,
        decoder_target_masks: dict[str, torch.Tensor] | None = None,
        target_rows: list[int] | None = None,
        mse_weight: float = 1.0,
    ) -> MuMuOutput:
        """Text CE on labels (-100 ignored); projector MSE on the rows that produce music.

        decoder_targets hold one row per entry of target_rows (default: every row of the batch), so a batch can mix
        samples that answer with music and samples that answer with text only. The loss (the one training
        minimises) is ce + mse_weight * (mse + mask), each part present only when its targets are given.
        """
        inputs = self.modality_inputs(media, input_ids.shape[0])
        with self.injection.inject(inputs, input_ids.shape[0]), module_outputs(self.projector_source) as states:
            out = self.llm(input_ids=input_ids, attention_mask=attention_mask)
        result = MuMuOutput(logits=out.logits)
        if labels is not None:
            result.ce_loss = F.cross_entropy(
                out.logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
            )
            result.loss = result.ce_loss
        if decoder_targets is not None:
            rows = list(range(input_ids.shape[0])) if target_rows is None else list(target_rows)
            hidden = self.audio_hidden(input_ids[rows], states[-1][rows], None if labels is None else labels[rows])
            result.projector = self.project(hidden)
            mse, mask = self.projector.loss(result.projector, decoder_targets, decoder_target_masks or {})
            result.mse_loss, result.mask_loss = mse, mask
            weighted = mse_weight * (mse + mask)
            result.loss = weighted if result.loss is None else result.loss + weighted
        return result

    def audio_hidden(
        self, input_ids: torch.Tensor, hidden: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, n_aud, H): for each row, the projector-source states at the positions that predict [AUD0..n] in order."""
        audio = self.audio_ids
        n = len(audio)
        rows = []
        for b in range(input_ids.shape[0]):
            where = input_ids[b] == audio[0]
            if labels is not None:
                where &= labels[b] == audio[0]
            starts = torch.nonzero(where).flatten()
            if len(starts) == 0:
                raise ValueError(f"row {b} has decoder targets but no [AUD0] token in its target text")
            start = int(starts[-1])
            if start == 0:
                raise ValueError(f"row {b}: [AUD0] cannot be the first token (no state predicts it)")
            if not torch.equal(input_ids[b, start : start + n], audio):
                raise ValueError(f"row {b}: [AUD0..{n - 1}] must appear consecutively and in order")
            rows.append(hidden[b, start - 1 : start - 1 + n])
        return torch.stack(rows)

    def project(self, audio_hidden: torch.Tensor) -> ProjectorOutput:
        """Projector input is the predicting hidden state plus the [AUD] token's own embedding (as in training)."""
        embeds = self.llm.get_input_embeddings()(self.audio_ids)
        return self.projector(audio_hidden + embeds.to(audio_hidden.dtype)[None])

    def trained_tensors(self) -> Iterator[tuple[str, TrainedPart, torch.Tensor]]:
        """(name, part, tensor) for every tensor this project trains, whatever the current stage freezes.

        The one definition of what trains: `set_trainable` sets gradients from it and `trained_state_dict` saves it
        (torchtune's get_adapter_params / set_trainable_params). Encoders and LLM base weights are never in it.
        """
        for prefix, part in OWN_MODULES.items():
            for name, tensor in getattr(self, prefix).state_dict(keep_vars=True).items():
                yield f"{prefix}.{name}", part, tensor
        extra = self.config.trainable.llm_params
        for name, param in self.llm.named_parameters():
            part = _llm_part(name, extra)
            if part is not None:
                yield f"llm.{name}", part, param

    def set_trainable(self) -> None:
        """requires_grad exactly as config.trainable says for each trained part; everything else frozen."""
        flags = self.config.trainable
        self.requires_grad_(False)
        for _, part, tensor in self.trained_tensors():
            if isinstance(tensor, nn.Parameter):
                tensor.requires_grad_(part == "llm_params" or bool(getattr(flags, part)))

    def trained_state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor this project trains (whatever the current stage freezes); nothing from pretrained parts."""
        return {name: tensor.detach() for name, _, tensor in self.trained_tensors()}


@contextmanager
def module_outputs(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the module's output hidden states (a decoder layer's or the final norm's) at every forward."""
    store: list[torch.Tensor] = []

    def hook(mod: nn.Module, args: tuple, out: torch.Tensor | tuple) -> None:
        store.append(out[0] if isinstance(out, tuple) else out)

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()
