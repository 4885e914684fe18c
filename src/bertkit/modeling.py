"""BERT in one file: embeddings, post-LN transformer encoder, tanh pooler.

Parameter names are Hugging Face's (`embeddings.word_embeddings.weight`,
`encoder.layer.0.attention.self.query.weight`, ...) so that HF checkpoints load by name and our
checkpoints load in transformers. The structure follows Google's modeling.py:

    embeddings = LayerNorm(word + position + token_type)            # (B, T, H)
    for each layer:
        h = LayerNorm(h + Dropout(Dense(SelfAttention(h))))          # post-LN, unlike GPT
        h = LayerNorm(h + Dropout(Dense(GELU(Dense(h)))))
    pooled = tanh(Dense(h[:, 0]))                                    # [CLS]
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.config import BertConfig

ACTIVATIONS = {
    "gelu": F.gelu,  # exact erf GELU, as HF's "gelu"; Google's TF code used the tanh approximation
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bool mask with P(True) = 1 - p, drawn 16 bits per element from 64-bit random words.

    On CPU, bernoulli_ spends about as long drawing a mask as the attention matmuls take: it was
    a fifth of a MiniLM training step. Drawing 64 random bits at once and cutting them into four
    16-bit lanes is about 4x faster. p is used to a resolution of 1/65536 (0.1 acts as 0.100006).
    """
    numel = math.prod(shape)
    words = torch.randint(-(2**63), 2**63 - 1, ((numel + 3) // 4,), dtype=torch.int64, device=device)
    lanes = words.view(torch.int16)[:numel].view(shape)
    return lanes >= round(p * 65536) - 32768


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; CPU masks come from keep_mask, other devices use torch's fused kernel."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    return x * keep_mask(x.shape, p, x.device) * (1.0 / (1.0 - p))


class Dropout(nn.Module):
    """nn.Dropout with the faster CPU mask; no parameters, so checkpoints are unaffected."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


@dataclass
class BertModelOutput:
    sequence_output: torch.Tensor  # (B, T, H): the top layer
    pooled_output: torch.Tensor | None  # (B, H): tanh(Dense([CLS])), None without a pooler
    embedding_output: torch.Tensor | None = None  # (B, T, H), only with output_hidden_states
    all_encoder_layers: list[torch.Tensor] | None = None  # L x (B, T, H), Google's get_all_encoder_layers
    attentions: list[torch.Tensor] | None = None  # L x (B, nh, T, T) attention probabilities

    # HF's names, for users who come from transformers.
    @property
    def last_hidden_state(self) -> torch.Tensor:
        return self.sequence_output

    @property
    def pooler_output(self) -> torch.Tensor | None:
        return self.pooled_output

    @property
    def hidden_states(self) -> tuple[torch.Tensor, ...] | None:
        if self.all_encoder_layers is None:
            return None
        return (self.embedding_output, *self.all_encoder_layers)


@dataclass
class TokenIndex:
    """Where the real tokens of a padded (B, T) batch are, for the padding-free path.

    The padding-free path runs embeddings, every dense layer and every LayerNorm on the (N, ...)
    rows of the N real tokens only, as FasterTransformer's "effective transformer" does; only
    attention needs the (B, T) structure, and gets it by scattering its q/k/v back into a padded
    block and gathering its output again. The two copies per layer cost far less than the dense
    layers save once a batch holds a tenth of padding or more (see UNPAD_THRESHOLD).
    """

    indices: torch.Tensor  # (N,) flat positions b * T + t of the real tokens, in row-major order
    batch_size: int
    seq_len: int

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> "TokenIndex":
        B, T = attention_mask.shape
        return cls(attention_mask.reshape(-1).nonzero().squeeze(1), B, T)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...)."""
        return x.reshape(self.batch_size * self.seq_len, *x.shape[2:]).index_select(0, self.indices)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) -> (B, T, ...), zeros at padding."""
        flat = x.new_zeros(self.batch_size * self.seq_len, *x.shape[1:]).index_copy(0, self.indices, x)
        return flat.view(self.batch_size, self.seq_len, *x.shape[1:])


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, tokens: TokenIndex | None = None):
        """(B, T) ids -> (B, T, H); with `tokens` (padding-free), (N, H) for the real tokens only."""
        B, T = input_ids.shape
        if T > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"sequence length {T} exceeds max_position_embeddings={self.position_embeddings.num_embeddings}; "
                "truncate the input or extend the table with max_position_embeddings=M at load time"
            )
        if position_ids is None:
            position_ids = torch.arange(T, device=input_ids.device)  # broadcast over the batch
        if tokens is not None:
            input_ids = tokens.unpad(input_ids)
            position_ids = tokens.unpad(position_ids.expand(B, T))
            token_type_ids = None if token_type_ids is None else tokens.unpad(token_type_ids)
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        if token_type_ids is None:
            embeddings = embeddings + self.token_type_embeddings.weight[0]
        else:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))  # (B, T, H) or (N, H)


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig, num_heads: int | None = None):
        super().__init__()
        self.num_heads = num_heads if num_heads is not None else config.num_attention_heads
        self.head_size = config.head_size
        inner = self.num_heads * self.head_size  # smaller than H once heads are pruned
        self.query = nn.Linear(config.hidden_size, inner)
        self.key = nn.Linear(config.hidden_size, inner)
        self.value = nn.Linear(config.hidden_size, inner)
        self.dropout_p = config.attention_probs_dropout_prob

    def project_qkv(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., 3 * nh * hs), q then k then v.

        One matmul for q, k and v: fewer, larger GEMMs are faster on CPU and GPU alike, while the
        parameters keep HF's three names. The concatenation is cheap next to the matmul.
        bertkit.int8 overrides this with one int8 matmul.
        """
        qkv_weight = torch.cat((self.query.weight, self.key.weight, self.value.weight))
        qkv_bias = torch.cat((self.query.bias, self.key.bias, self.value.bias))
        return F.linear(hidden_states, qkv_weight, qkv_bias)

    def forward(self, hidden_states, attention_mask=None, head_mask=None, output_attentions=False,
                tokens: TokenIndex | None = None):
        """(B, T, H) -> (B, T, nh * hs); padding-free, (N, H) -> (N, nh * hs) given `tokens`."""
        qkv = self.project_qkv(hidden_states)
        if tokens is not None:
            qkv = tokens.pad(qkv)  # attention alone needs the (B, T) structure
        B, T, _ = qkv.shape
        q, k, v = qkv.view(B, T, 3, self.num_heads, self.head_size).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        dropout_p = self.dropout_p if self.training else 0.0
        # SDPA's fused kernels cover inference and GPU training; CPU training with attention
        # dropout would fall back to SDPA's unfused math path anyway, and there the eager path
        # below is the same work with the faster dropout mask.
        eager = output_attentions or head_mask is not None or (dropout_p > 0 and q.device.type == "cpu")

        if not eager:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=dropout_p)
            probs = None
        else:
            # Also the path that returns the probabilities or weights heads by a mask
            # (head-importance scores take the gradient of the loss with respect to that mask).
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (B, nh, T, T)
            if attention_mask is not None:
                scores = scores + attention_mask
            probs = scores.softmax(dim=-1)
            weighted = dropout(probs, dropout_p, self.training)
            if head_mask is not None:
                weighted = weighted * head_mask.view(1, -1, 1, 1)
            context = weighted @ v  # (B, nh, T, hs)
        context = context.transpose(1, 2).reshape(B, T, self.num_heads * self.head_size)
        if tokens is not None:
            context = tokens.unpad(context)
        return context, probs


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig, input_size: int | None = None):
        super().__init__()
        self.dense = nn.Linear(input_size or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig, num_heads: int | None = None):
        super().__init__()
        self.self = BertSelfAttention(config, num_heads)
        self.output = BertSelfOutput(config, input_size=self.self.num_heads * self.self.head_size)

    def forward(self, hidden_states, attention_mask=None, head_mask=None, output_attentions=False, tokens=None):
        context, probs = self.self(hidden_states, attention_mask, head_mask, output_attentions, tokens)
        return self.output(context, hidden_states), probs


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig, intermediate_size: int | None = None):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, intermediate_size or config.intermediate_size)
        self.intermediate_act_fn = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, T, I) or (N, I)


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig, intermediate_size: int | None = None):
        super().__init__()
        self.dense = nn.Linear(intermediate_size or config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig, num_heads: int | None = None, intermediate_size: int | None = None):
        super().__init__()
        self.attention = BertAttention(config, num_heads)
        self.intermediate = BertIntermediate(config, intermediate_size)
        self.output = BertOutput(config, intermediate_size)

    def forward(self, hidden_states, attention_mask=None, head_mask=None, output_attentions=False, tokens=None):
        attention_output, probs = self.attention(hidden_states, attention_mask, head_mask, output_attentions,
                                                 tokens)
        layer_output = self.output(self.intermediate(attention_output), attention_output)
        return layer_output, probs


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        # Pruned models (bertkit.compress.prune) have fewer heads / FFN neurons in some layers; the
        # per-layer sizes are kept in the config so that such a model loads again.
        heads, sizes = config.layer_sizes()
        self.layer = nn.ModuleList(BertLayer(config, heads[i], sizes[i]) for i in range(config.num_hidden_layers))
        self.config = config  # the model's one config object, shared with the model and its head
        # LayerDrop draws from a generator of its own, not the global RNG: under DDP every process
        # draws its own dropout masks from a differently seeded global RNG, but all must skip the
        # same layers (a layer skipped on one process only would get half a gradient). The Trainer
        # seeds this `shared_generator` identically on every process and checkpoints it; outside
        # the Trainer it starts from torch's seed (torch.manual_seed), without drawing from it.
        self.shared_generator = torch.Generator().manual_seed(torch.initial_seed())

    @property
    def layerdrop(self) -> float:
        """LayerDrop (Fan et al., 2019): in training, skip each layer with probability `layerdrop`,
        one decision per layer per batch (structured: the whole batch skips it). Read from the config,
        so that bertkit.compress.layerdrop.set_layerdrop changes it on a built model and saving keeps it."""
        return self.config.layerdrop

    def forward(self, hidden_states, attention_mask=None, head_mask=None, output_hidden_states=False,
                output_attentions=False, tokens: TokenIndex | None = None):
        all_layers = [] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        drop = None
        if self.training and self.layerdrop > 0:
            # A CPU draw: no device sync.
            drop = (torch.rand(len(self.layer), generator=self.shared_generator) < self.layerdrop).tolist()
        for i, layer in enumerate(self.layer):
            if drop is not None and drop[i]:
                # A skipped layer passes its input through; the lists keep one entry per layer.
                if output_hidden_states:
                    all_layers.append(hidden_states)
                if output_attentions:
                    all_attentions.append(None)
                continue
            hidden_states, probs = layer(
                hidden_states, attention_mask, None if head_mask is None else head_mask[i], output_attentions, tokens
            )
            if output_hidden_states:
                all_layers.append(hidden_states)
            if output_attentions:
                all_attentions.append(probs)
        return hidden_states, all_layers, all_attentions


class BertPooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, sequence_output):
        return self.activation(self.dense(sequence_output[:, 0]))  # (B, H) from [CLS]


# Share of padding in a batch above which BertModel takes the padding-free path unless told
# otherwise. bench/bench_inference.py --threshold measures it (MiniLM, 32 x 128, 2 threads): the
# gather/scatter around attention is a few percent of a forward pass, so below about a tenth of
# padding the saving is lost in it (and in the noise of a shared 2-core machine). Re-measured in
# CPU seconds (--threads 1 --cpu-time, load average 7-11): padded / padding-free 0.88, 1.00, 1.14,
# 1.19, 1.14, 1.16, 1.28, 1.88 at 0, 3, 6, 12, 14, 23, 28, 50% padding, on average 0.965 of the
# ideal 1 / (1 - padding): even at 3-4%, and at 5-10% a gain of 2-7%, inside that curve's +-8%
# noise (same work, padded column), so a lower threshold is not shown to pay.
UNPAD_THRESHOLD = 0.1


def use_padding_free(attention_mask: torch.Tensor | None, unpad: bool | None) -> bool:
    """unpad=True/False forces the choice; None picks the padding-free path above UNPAD_THRESHOLD."""
    if attention_mask is None or unpad is False:
        return False
    if unpad:
        return True
    return 1.0 - attention_mask.float().mean().item() > UNPAD_THRESHOLD


def extended_attention_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) of 1 = token, 0 = padding -> additive (B, 1, 1, T) mask, or None when nothing is padded.

    Returning None for an all-ones mask lets scaled_dot_product_attention pick its unmasked kernel.
    A large finite negative rather than -inf keeps a fully padded row finite instead of NaN.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


class BertPreTrainedModel(nn.Module):
    """Google's initialisation and weight tying, shared by every model class.

    Loading and saving are not here: the public classes (bertkit.BertModel, bertkit.heads.BertFor*)
    get from_pretrained / save_pretrained from bertkit.checkpoint.pretrained.PretrainedMixin.
    """

    base_model_prefix = "bert"
    # Parameters that share storage with another one: {tied name: source name}.
    tied_weights: dict[str, str] = {}

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config

    def init_weights(self, *modules: nn.Module) -> None:
        """Initialise `modules` (default: the whole model), then re-tie shared weights; nothing
        inside `deferred_init()`, where the caller initialises what it does not load.

        Heads pass only their new layers: the encoder inside was initialised when it was built.
        """
        if _INIT_WEIGHTS.get():
            for module in modules or (self,):
                module.apply(self._init_module)
        self.tie_weights()

    def init_parameters(self, names: Iterable[str]) -> None:
        """Initialise these parameters (state-dict names) only, as init_weights would: the ones a
        checkpoint did not hold, after a load under deferred_init(). Buffers are left as built."""
        parameters = dict(self.named_parameters(remove_duplicate=False))
        for name in names:
            if name in parameters:
                owner, _, kind = name.rpartition(".")
                init_parameter(self.get_submodule(owner), kind, self.config.initializer_range)
        self.tie_weights()

    def _init_module(self, module: nn.Module) -> None:
        init_module(module, self.config.initializer_range)

    def tie_weights(self) -> None:
        """Re-point tied parameters at their source (after init, loading or resizing)."""

    @property
    def base_model(self) -> "BertModel":
        """The encoder inside a head (`model.bert`), or the model itself: transformers' base_model."""
        inner = getattr(self, self.base_model_prefix, None) if self.base_model_prefix else self
        if not isinstance(inner, BertModel):
            raise TypeError(f"{type(self).__name__} has no BertModel inside (expected a `{self.base_model_prefix}` "
                            "attribute)")
        return inner

    @property
    def may_leave_parameters_unused(self) -> bool:
        """Whether a training step can leave some parameters without a gradient, so that
        DistributedDataParallel must look for them (find_unused_parameters, which costs a graph
        traversal per step otherwise saved): LayerDrop skips whole layers."""
        return self.config.layerdrop > 0

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


_INIT_WEIGHTS = contextvars.ContextVar("bertkit_init_weights", default=True)


@contextlib.contextmanager
def deferred_init():
    """Build models without Google's initialisation: from_pretrained overwrites the weights with the
    checkpoint's anyway, and drawing a truncated normal for all of them took longer than reading
    the file (about 5 s for MiniLM and 20 s for BERT-base on one core of an AVX2 EPYC). The caller
    initialises what the checkpoint lacks with `init_parameters`."""
    token = _INIT_WEIGHTS.set(False)
    try:
        yield
    finally:
        _INIT_WEIGHTS.reset(token)


def init_module(module: nn.Module, initializer_range: float) -> None:
    """Google's scheme: truncated normal (cut at 2 std, as tf.truncated_normal_initializer), zero biases."""
    for kind in ("weight", "bias"):
        if getattr(module, kind, None) is not None:
            init_parameter(module, kind, initializer_range)


def init_parameter(module: nn.Module, kind: str, initializer_range: float) -> None:
    """One parameter of `module` ("weight" or "bias") by Google's scheme; other modules' parameters
    keep what their constructor made (the MLM output bias: zeros)."""
    tensor = getattr(module, kind)
    if isinstance(module, (nn.Linear, nn.Embedding)):
        if kind == "weight":
            std = initializer_range
            nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)
        else:
            nn.init.zeros_(tensor)
    elif isinstance(module, nn.LayerNorm):
        (nn.init.ones_ if kind == "weight" else nn.init.zeros_)(tensor)


class BertModel(BertPreTrainedModel):
    """The encoder without a task head; returns sequence_output and pooled_output.

    Pure nn code: load and save with bertkit.BertModel (bertkit.heads.BertModel), this class plus
    from_pretrained / save_pretrained.
    """

    base_model_prefix = ""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.init_weights()

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: torch.Tensor | None = None,  # (B, T), 1 = token, 0 = padding
        token_type_ids: torch.Tensor | None = None,  # (B, T), 0 = segment A, 1 = segment B
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,  # (L, nh) multiplies attention probabilities
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        unpad: bool | None = None,  # padding-free path: None = when padding > UNPAD_THRESHOLD
    ) -> BertModelOutput:
        """Outputs are (B, T, ...) either way. The padding-free path leaves zeros at padding
        positions of sequence_output and the hidden states; the padded path leaves whatever the
        layers computed there. Real tokens agree to float rounding, values and gradients alike."""
        if unpad is None and output_attentions:
            unpad = False  # an analysis output: keep the padded path's rows at padding queries as well
        tokens = TokenIndex.from_mask(attention_mask) if use_padding_free(attention_mask, unpad) else None
        embedding_output = self.embeddings(input_ids, token_type_ids, position_ids, tokens)
        mask = extended_attention_mask(attention_mask, embedding_output.dtype)
        sequence_output, all_layers, attentions = self.encoder(
            embedding_output, mask, head_mask, output_hidden_states, output_attentions, tokens
        )
        if tokens is not None:
            sequence_output = tokens.pad(sequence_output)
            if output_hidden_states:
                embedding_output = tokens.pad(embedding_output)
                all_layers = [tokens.pad(h) for h in all_layers]
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BertModelOutput(
            sequence_output=sequence_output,
            pooled_output=pooled_output,
            embedding_output=embedding_output if output_hidden_states else None,
            all_encoder_layers=all_layers,
            attentions=attentions,
        )
