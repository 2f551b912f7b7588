"""The AutoRegEmbed encoder and its frozen decoder, over one causal-LM backbone.

Input layout (built here, never by the tokenizer's padding logic):

    [BOS] + tok(prompt prefix) + tok(text, truncated) + tok(prompt suffix) + <EMBED0..k-1> + right padding

so the k compress tokens sit right after the last real token whatever side the tokenizer pads on.
Under causal attention, right padding can never influence a real position, so no attention mask is
passed: the fast causal kernels run, and a text gives the same vector alone or inside any batch (up
to the floating-point rounding of kernels blocked by the batch's padded shape).

The compress-token rows live in their own k x H table (`compress_embeddings`) rather than in a
resized vocabulary: the frozen decoder keeps exactly the base's vocabulary and tied LM head, which
lets encoder and decoder share one copy of the base weights (the decoder is the base with any
adapters disabled).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArrError
from ..registry.model_entry import split_template

COMPRESS_TOKEN = "<EMBED{}>"
# Attribute names of the transformer's last norm across architectures (Llama/Qwen, GPT-2, Phi, OPT).
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm")


def final_norm(causal_lm: nn.Module) -> nn.Module | None:
    """The backbone's last norm, whose gain sets the scale of the last hidden states."""
    transformer = causal_lm.get_decoder()
    return next((getattr(transformer, n) for n in FINAL_NORM_NAMES if isinstance(getattr(transformer, n, None), nn.Module)), None)


@dataclass
class EncodedTexts:
    """Token ids per text (prompt and compress tokens included) and which texts were cut."""

    input_ids: list[list[int]]
    truncated: list[bool]


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into a (B, L) tensor; also return the real lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    batch = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return batch, lengths


class PromptedInputs:
    """Texts → encoder input ids in the layout above, and right-padded batches. A mixin for the
    model and its traced copy (arretrieve.modeling.traced): they provide `_tokenize`, `bos_ids`,
    `compress_token_ids`, `pad_id`, `max_length` and `device`."""

    def encode_texts(self, texts: Sequence[str], template: str) -> EncodedTexts:
        """Token ids for texts wrapped in a prompt template; only the text part is ever truncated."""
        prefix, suffix = split_template(template)
        return self.encode_parts(texts, [prefix] * len(texts), [suffix] * len(texts))

    def encode_parts(self, texts: Sequence[str], prefixes: Sequence[str], suffixes: Sequence[str]) -> EncodedTexts:
        """[BOS] + prefix + text + suffix + compress tokens per text, each piece tokenised on its own
        (as the reference code does); the text is cut to fit max_length, never the rest."""
        cache: dict[str, list[int]] = {}

        def pieces(strings: Sequence[str]) -> list[list[int]]:
            missing = [p for p in dict.fromkeys(strings) if p and p not in cache]
            cache.update(zip(missing, self._tokenize(missing)))
            return [cache[p] if p else [] for p in strings]

        input_ids, truncated = [], []
        for prefix_ids, text_ids, suffix_ids in zip(pieces(prefixes), self._tokenize(texts), pieces(suffixes)):
            fixed = len(self.bos_ids) + len(prefix_ids) + len(suffix_ids) + len(self.compress_token_ids)
            room = self.max_length - fixed
            if room < 1:
                raise ArrError(f"max_length {self.max_length} leaves no room for text after the prompt ({fixed} tokens)")
            truncated.append(len(text_ids) > room)
            input_ids.append(self.bos_ids + prefix_ids + text_ids[:room] + suffix_ids + self.compress_token_ids)
        return EncodedTexts(input_ids, truncated)

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (B, L) ids and real lengths, on the model's device."""
        batch, lengths = right_pad(sequences, self.pad_id)
        return batch.to(self.device), lengths.to(self.device)


class AutoRegEmbedModel(PromptedInputs, nn.Module):
    def __init__(
        self,
        causal_lm: nn.Module,
        tokenizer,
        num_compress_tokens: int,
        add_bos: bool,
        max_length: int,
        compress_embeddings: torch.Tensor | None = None,
        frozen_decoder_lm: nn.Module | None = None,
        state_scale: torch.Tensor | None = None,
        decoder_chat_template: str | None = None,
    ):
        super().__init__()
        # The released base's prompt format, for instructing the frozen decoder (`write_from_text`).
        self.decoder_chat_template = decoder_chat_template
        self.causal_lm = causal_lm
        self.tokenizer = tokenizer
        self.num_compress_tokens = num_compress_tokens
        self.max_length = max_length
        if add_bos and tokenizer.bos_token_id is None:
            raise ArrError("the registry entry asks for a BOS token but this tokenizer has none; set add_bos false")
        self.bos_ids = [tokenizer.bos_token_id] if add_bos else []
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ArrError("the tokenizer has neither a pad nor an EOS token")
        self.pad_id = pad_id
        self.eos_id = tokenizer.eos_token_id

        embed_tokens = self._base_lm.get_input_embeddings()
        tokens = [COMPRESS_TOKEN.format(i) for i in range(num_compress_tokens)]
        tokenizer.add_tokens(tokens, special_tokens=True)
        self.compress_token_ids = tokenizer.convert_tokens_to_ids(tokens)
        self.first_compress_id = self.compress_token_ids[0]
        if self.compress_token_ids != list(range(self.first_compress_id, self.first_compress_id + num_compress_tokens)):
            raise ArrError(f"the tokenizer gave non-contiguous ids to the compress tokens: {self.compress_token_ids}")
        if compress_embeddings is None:
            # Deterministic start: every row is the mean input embedding of the base vocabulary.
            mean = embed_tokens.weight.detach().float().mean(0)
            compress_embeddings = mean.expand(num_compress_tokens, -1).clone()
        width = embed_tokens.weight.shape[1]  # peft wraps an adapted embedding, which then has no embedding_dim
        if tuple(compress_embeddings.shape) != (num_compress_tokens, width):
            raise ArrError(
                f"compress embeddings have shape {tuple(compress_embeddings.shape)}, expected "
                f"({num_compress_tokens}, {width})"
            )
        self.compress_embeddings = nn.Parameter(
            compress_embeddings.to(device=embed_tokens.weight.device, dtype=embed_tokens.weight.dtype)
        )
        # Full fine-tuning keeps a separate frozen copy of the base as decoder; otherwise the
        # decoder is the backbone itself with adapters disabled.
        self.frozen_decoder_lm = frozen_decoder_lm
        if frozen_decoder_lm is not None:
            frozen_decoder_lm.requires_grad_(False).eval()
        self._adapters_off = False  # inside frozen_decoder() on the shared copy
        # An optional learned scalar on the states the decoder receives (see `initial_state_scale`).
        # The embedding is L2-normalised, so it changes what the decoder reads, never the vectors.
        self.register_parameter("state_scale", None if state_scale is None else nn.Parameter(
            torch.as_tensor(state_scale, dtype=torch.float32, device=embed_tokens.weight.device).reshape(())))

    # ----------------------------------------------------------------- backbone access
    @property
    def _base_lm(self) -> nn.Module:
        """The transformers CausalLM under any peft wrapper (peft injects its layers in place)."""
        get_base = getattr(self.causal_lm, "get_base_model", None)
        return get_base() if callable(get_base) else self.causal_lm

    def initial_state_scale(self) -> float:
        """Token-embedding norm ÷ the states' expected norm. The last hidden states leave the final
        RMSNorm with norm ≈ sqrt(H)·RMS(gain) (≈ 45 for SmolLM2-135M), while the decoder's own
        inputs, token embeddings, have norm ≈ 3: started there, the decoder reads states at the
        scale it was trained on."""
        base = self._base_lm
        tokens = base.get_input_embeddings().weight.detach().float().norm(dim=-1).mean()
        gain = getattr(final_norm(base), "weight", None)
        expected = (self.hidden_size ** 0.5) * (gain.detach().float().pow(2).mean().sqrt() if gain is not None else 1.0)
        return float(tokens / expected)

    @property
    def hidden_size(self) -> int:
        return self.compress_embeddings.shape[1]

    @property
    def device(self) -> torch.device:
        return self.compress_embeddings.device

    # ----------------------------------------------------------------- tokenisation
    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    # ----------------------------------------------------------------- encoder side
    def _input_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        offset = input_ids - self.first_compress_id
        is_compress = (offset >= 0) & (offset < self.num_compress_tokens)
        embed_tokens = self._base_lm.get_input_embeddings()
        token_embeds = embed_tokens(input_ids.masked_fill(is_compress, self.pad_id))
        compress_rows = self.compress_embeddings[offset.clamp(0, self.num_compress_tokens - 1)]
        return torch.where(is_compress.unsqueeze(-1), compress_rows.to(token_embeds.dtype), token_embeds)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) right-padded ids → (B, L, H) last-layer hidden states (after the final norm)."""
        transformer = self._base_lm.get_decoder()
        return transformer(inputs_embeds=self._input_embeddings(input_ids), use_cache=False).last_hidden_state

    def gather_compress(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, k, H) states at the k compress tokens, which end each row."""
        k = self.num_compress_tokens
        positions = lengths.unsqueeze(1) - k + torch.arange(k, device=lengths.device)
        return hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))

    def compress(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L) right-padded ids → (B, k, H) last-layer hidden states at the compress tokens."""
        return self.gather_compress(self.hidden_states(input_ids), lengths)

    def embed(self, input_ids: torch.Tensor, lengths: torch.Tensor, pooling: str = "compress-mean") -> torch.Tensor:
        """L2-normalised float32 embeddings. Pooling: `compress-mean` (AutoRegEmbed), `last-token`
        (the final position) or `mean` (every real position), the last two for contrastive baselines."""
        hidden = self.hidden_states(input_ids)
        if pooling == "compress-mean":
            pooled = self.gather_compress(hidden, lengths).float().mean(1)
        elif pooling == "last-token":
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1].float()
        elif pooling == "mean":
            mask = (torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
            pooled = (hidden.float() * mask).sum(1) / lengths.unsqueeze(1)
        else:
            raise ArrError(f"unknown pooling {pooling!r}; use compress-mean, last-token or mean")
        return F.normalize(pooled, dim=-1)

    @staticmethod
    def pool(compressed: torch.Tensor) -> torch.Tensor:
        """The embedding: mean of the k compress states, L2-normalised, in float32."""
        return F.normalize(compressed.float().mean(1), dim=-1)

    def train(self, mode: bool = True) -> AutoRegEmbedModel:
        super().train(mode)
        if self.frozen_decoder_lm is not None:
            self.frozen_decoder_lm.eval()  # the decoder is the released base: never in training mode
        return self

    # ----------------------------------------------------------------- decoder side
    @contextlib.contextmanager
    def frozen_decoder(self) -> Iterator[nn.Module]:
        """The base causal LM exactly as released: a separate frozen copy, or the backbone with adapters off."""
        if self.frozen_decoder_lm is not None:
            yield self.frozen_decoder_lm
        elif hasattr(self.causal_lm, "disable_adapter"):
            with self.causal_lm.disable_adapter():
                self._adapters_off = True
                try:
                    yield self._base_lm
                finally:
                    self._adapters_off = False
        else:
            yield self._base_lm

    def enable_gradient_checkpointing(self) -> None:
        """Checkpoint the backbone's layers, recomputing each as it first ran.

        The shared copy serves as encoder (adapters on) and as frozen decoder (adapters off), but a
        checkpointed layer is recomputed during backward, after `frozen_decoder()` has exited: the
        decoder's layers would be recomputed with the adapters on, which gives other activations
        (torch refuses with CheckpointError). The recomputation therefore runs under the adapter
        state its forward saw.
        """

        def context_fn():
            if self._adapters_off:
                return contextlib.nullcontext(), self.causal_lm.disable_adapter()
            return contextlib.nullcontext(), contextlib.nullcontext()

        kwargs = {"use_reentrant": False, "context_fn": context_fn}
        enable = getattr(self.causal_lm, "activation_checkpointing_enable", None)  # transformers >= 5.x names it so
        if enable is not None:
            enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def compile_layers(self) -> None:
        """torch.compile every transformer layer of the backbone (and of a separate frozen decoder) in
        place. The layers share one code object, so one compiled graph per mode (encoder, decoder
        with adapters off, no-grad evaluation) serves them all; shapes are dynamic from the start,
        since batches vary in length. Names and weights are unchanged (save, load and resume as before)."""
        for lm in filter(None, (self._base_lm, self.frozen_decoder_lm)):
            stacks = [m for m in lm.get_decoder().children() if isinstance(m, nn.ModuleList)]
            if not stacks:
                raise ArrError(f"cannot find the layer stack of {type(lm).__name__} to compile; train without compile_layers")
            for layer in stacks[0]:
                layer.compile(dynamic=True)

    def encode_targets(self, targets: Sequence[str], max_target_length: int | None = None) -> EncodedTexts:
        """Decoder targets, cut to `max_target_length` tokens with the EOS kept; which were cut."""
        limit = (max_target_length or self.max_length) - 1
        tokenized = self._tokenize(targets)
        return EncodedTexts([ids[:limit] + [self.eos_id] for ids in tokenized], [len(ids) > limit for ids in tokenized])

    def decoder_states(self, compressed: torch.Tensor) -> torch.Tensor:
        """The compressed states as the decoder reads them: times the learned state scale, if any."""
        return compressed if self.state_scale is None else compressed * self.state_scale

    def score_padded(self, compressed: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
        """Summed log p(target | compressed) for right-padded (B, T) targets and their lengths."""
        k = self.num_compress_tokens
        with self.frozen_decoder() as decoder_lm:
            embeds = decoder_lm.get_input_embeddings()(targets)
            inputs = torch.cat([self.decoder_states(compressed).to(embeds.dtype), embeds], dim=1)
            hidden = decoder_lm.get_decoder()(inputs_embeds=inputs, use_cache=False).last_hidden_state
            # Position k-1+t predicts target token t. Only real (unpadded) target positions go
            # through the LM head: its (tokens x vocabulary) logits dominate memory.
            predicting = hidden[:, k - 1 : k - 1 + targets.shape[1]]
            mask = torch.arange(targets.shape[1], device=targets.device).unsqueeze(0) < target_lengths.unsqueeze(1)
            logits = decoder_lm.get_output_embeddings()(predicting[mask]).float()
        token_logp = -F.cross_entropy(logits, targets[mask], reduction="none")
        rows = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1).expand_as(mask)[mask]
        return torch.zeros(targets.shape[0], device=token_logp.device, dtype=token_logp.dtype).index_add(0, rows, token_logp)

    @torch.no_grad()
    def read_back(self, texts: Sequence[str], template: str, max_new_tokens: int = 24) -> list[str]:
        """What the frozen decoder writes from each text's compressed states, greedily: the states
        are its only input, as in stage 1, so the text shows what they carry (`--explain`)."""
        encoded = self.encode_texts(texts, template)
        ids, lengths = self.pad(encoded.input_ids)
        compressed = self.decoder_states(self.compress(ids, lengths))
        with self.frozen_decoder() as decoder_lm:
            inputs = compressed.to(decoder_lm.get_input_embeddings().weight.dtype)
            written = decoder_lm.generate(inputs_embeds=inputs, attention_mask=torch.ones(inputs.shape[:2], dtype=torch.long,
                                                                                        device=inputs.device),
                                          max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                          eos_token_id=self.eos_id, pad_token_id=self.eos_id)
        return [self.tokenizer.decode([t for t in row.tolist() if t != self.eos_id], skip_special_tokens=True).strip()
                for row in written]

    def require_chat_template(self) -> None:
        """Refuse, before any work, to instruct a decoder whose base has no chat template."""
        if not self.decoder_chat_template:
            raise ArrError("the base model has no chat template, so its decoder cannot be instructed to write from "
                           "a text; write pseudo-queries from the states (source = \"states\") instead")

    @torch.no_grad()
    def write_from_text(self, texts: Sequence[str], instruction: str, max_new_tokens: int = 24,
                        max_text_tokens: int = 256) -> list[str]:
        """What the frozen decoder, prompted as the chat model it was released as, answers to
        `instruction` after each text (its first `max_text_tokens` tokens), greedily, first line
        only: a pseudo-query grounded in the document's words rather than in its states."""
        self.require_chat_template()
        prompts = []
        for ids in self._tokenize(texts):
            body = self.tokenizer.decode(ids[:max_text_tokens])
            prompts.append(self.tokenizer.apply_chat_template(
                [{"role": "user", "content": f"{body}\n\n{instruction}"}], chat_template=self.decoder_chat_template,
                add_generation_prompt=True, tokenize=True, return_dict=False))
        width = max(map(len, prompts))
        # Left-padded: every prompt ends where generation starts.
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        with self.frozen_decoder() as decoder_lm:
            written = decoder_lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                          do_sample=False, num_beams=1, eos_token_id=self.eos_id, pad_token_id=self.pad_id)
        lines = [self.tokenizer.decode([t for t in row.tolist() if t != self.eos_id], skip_special_tokens=True)
                 for row in written[:, width:]]
        return [(line.strip().splitlines() or [""])[0].strip() for line in lines]

    @torch.no_grad()
    def query_likelihood(self, texts: Sequence[str], template: str, query: str, batch_size: int = 16) -> torch.Tensor:
        """Per text, the mean log-likelihood per token of `query` (and EOS) under the frozen decoder
        after the text's compressed states: a generative relevance score (`--rerank likelihood`)."""
        target = self.encode_targets([query]).input_ids[0]
        scores = []
        for start in range(0, len(texts), batch_size):
            encoded = self.encode_texts(texts[start:start + batch_size], template)
            ids, lengths = self.pad(encoded.input_ids)
            targets = torch.tensor([target] * len(encoded.input_ids), device=self.device)
            target_lengths = torch.full((len(encoded.input_ids),), len(target), device=self.device)
            scores.append(self.score_padded(self.compress(ids, lengths), targets, target_lengths) / len(target))
        return torch.cat(scores).float().cpu()

    def score_after_tokens(self, prefixes: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed log p(target | prefix tokens), target lengths) from the frozen decoder, where the
        prefix is ordinary token ids (the plain-text counterpart of `score_padded`'s states)."""
        ids, _ = self.pad([list(p) + list(t) for p, t in zip(prefixes, targets)])
        starts = torch.tensor([len(p) for p in prefixes], device=self.device)
        lengths = torch.tensor([len(t) for t in targets], device=self.device)
        offsets = torch.arange(int(lengths.max()), device=self.device)
        mask = offsets.unsqueeze(0) < lengths.unsqueeze(1)
        # Position start-1+t predicts target token t.
        positions = (starts.unsqueeze(1) - 1 + offsets).clamp(max=ids.shape[1] - 1)
        with self.frozen_decoder() as decoder_lm:
            hidden = decoder_lm.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state
            predicting = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))[mask]
            logits = decoder_lm.get_output_embeddings()(predicting).float()
        wanted = ids.gather(1, (positions + 1).clamp(max=ids.shape[1] - 1))[mask]
        token_logp = -F.cross_entropy(logits, wanted, reduction="none")
        rows = torch.arange(ids.shape[0], device=self.device).unsqueeze(1).expand_as(mask)[mask]
        summed = torch.zeros(ids.shape[0], device=self.device, dtype=token_logp.dtype).index_add(0, rows, token_logp)
        return summed, lengths
