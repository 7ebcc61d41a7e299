"""Text classification: CSV/TSV/JSONL data, a BERT-class encoder, int64 inputs ``input_ids`` + ``attention_mask``.

The deployment preprocessing is the tokenizer (``tokenizer.json``, written by fine-tuning into the run's ``train/``
and shipped in the bundle), truncation to ``max_seq_len`` tokens and padding: to the longest text of a batch
(dynamic padding) where the model's sequence axis is dynamic. The preprocessing spec names the tokenizer file, its
sha256 and, inside a run, where it lies (``tokenizer_path``); every stage, the benchmark and ``edgetl predict``
tokenize through ``encode_texts`` with the one file, so the accuracy a report states is the accuracy a bundle
delivers.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.errors import ConfigError, DataError, ModelFileError
from edgetl.tasks.base import CPP_LOGITS_TO_CLASS, TASKS, EvalBatch, ResolvedInput, Task

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from edgetl.artifacts import ModelIO
    from edgetl.backbones import BackboneSpec
    from edgetl.config import BuildConfig, DataConfig, TrainConfig
    from edgetl.data import DatasetIndex
    from edgetl.targets import TargetProfile

log = logging.getLogger("edgetl.data")

INPUT_NAMES, OUTPUT_NAME = ("input_ids", "attention_mask"), "logits"
TOKENIZER_FILE = "tokenizer.json"
EXAMPLE_SEQ_LEN = 16  # tracing/export examples; any length > 1 works (torch.export specialises a size-1 axis)
PREDICT_TEXT_SUFFIXES = (".txt", ".text", "")  # one text per line; other suffixes are labelled data files


@dataclass(frozen=True)
class TextItem:
    """One ``edgetl predict`` input: the text, its true label when the input file gives one, and where it came from."""

    text: str
    label: str | None = None
    where: str = ""

    def __str__(self) -> str:
        shown = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"{self.where} {shown!r}" if self.where else repr(shown)


# ---------------------------------------------------------------------------------------------- the tokenizer
_TOKENIZERS: dict[tuple[str, str], Tokenizer] = {}
_LOCK = threading.Lock()


def source_tokenizer(cfg: BuildConfig, spec: BackboneSpec) -> Tokenizer:
    """The tokenizer of the weights being fine-tuned: a ``--weights`` Hugging Face directory's, else the entry's."""
    from edgetl.backbones.text import TextBackboneSpec, load_tokenizer

    if not isinstance(spec, TextBackboneSpec):
        raise ConfigError(f"backbone {spec.name} is not a text encoder")
    weights = cfg.train.weights
    if weights not in ("default", "none") and Path(weights).is_dir():
        return load_tokenizer(Path(weights))
    return load_tokenizer(spec)


def tokenizer_for(preprocess: dict[str, Any]) -> Tokenizer:
    """The tokenizer a preprocessing spec names (``tokenizer_path``), its sha256 checked; loaded once per process.

    Raises:
        ModelFileError: the file is missing, modified, or not a tokenizer.
    """
    from edgetl.backbones.text import load_tokenizer
    from edgetl.fsutil import sha256_file

    path = preprocess.get("tokenizer_path")
    digest = str(preprocess.get("tokenizer_sha256", ""))
    if not path:
        raise ModelFileError("the preprocessing spec names no tokenizer file (tokenizer_path)",
                         hint="rerun `edgetl train` with this edgetl version")
    key = (str(path), digest)
    with _LOCK:
        if key in _TOKENIZERS:
            return _TOKENIZERS[key]
        p = Path(path)
        if not p.is_file():
            raise ModelFileError(f"tokenizer {p} does not exist",
                                 hint="the run directory was moved or cleaned: rerun `edgetl train`")
        if digest and sha256_file(p) != digest:
            raise ModelFileError(f"tokenizer {p} does not match its sha256 (modified or replaced)",
                                 hint="restore it or rerun `edgetl train`")
        _TOKENIZERS[key] = load_tokenizer(p)
        return _TOKENIZERS[key]


def encode_texts(texts: Sequence[str], preprocess: dict[str, Any],
                 pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize as the deployment does: truncate to ``max_seq_len``, pad to the longest text (or to ``pad_to``).

    Returns:
        ``(input_ids, attention_mask)``, int64 arrays of shape (len(texts), length).
    """
    from edgetl.backbones.text import encode_batch, pad_token_id

    tokenizer = tokenizer_for(preprocess)
    with _LOCK:  # the tokenizer's truncation setting is shared state
        ids, mask = encode_batch(tokenizer, list(texts), int(preprocess["max_seq_len"]))
    if pad_to is not None and ids.shape[1] < pad_to:
        extra = pad_to - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=pad_token_id(tokenizer))
        mask = np.pad(mask, ((0, 0), (0, extra)), constant_values=0)
    return ids, mask


def token_counts(texts: Sequence[str], preprocess: dict[str, Any]) -> list[int]:
    from edgetl.backbones.text import token_lengths

    tokenizer = tokenizer_for(preprocess)
    with _LOCK:
        return token_lengths(tokenizer, list(texts), int(preprocess["max_seq_len"]))


def _lowercases(tokenizer: Tokenizer) -> bool:
    normalizer = json.loads(tokenizer.to_str()).get("normalizer") or {}
    parts = normalizer.get("normalizers", [normalizer])
    return any(p.get("lowercase") or p.get("type") == "Lowercase" for p in parts if isinstance(p, dict))


def _position_limit(spec: BackboneSpec) -> int | None:
    """How many positions the encoder's position table holds (None: unknown)."""
    from edgetl.backbones.text import TextBackboneSpec

    if not isinstance(spec, TextBackboneSpec):
        return None
    try:
        if spec.hf_dir is not None:
            config = json.loads((spec.hf_dir() / "config.json").read_text(encoding="utf-8"))
            return int(config.get("max_position_embeddings") or 0) or None
        if spec.encoder_config is not None:
            return int(getattr(spec.encoder_config(), "max_position_embeddings", 0) or 0) or None
    except (OSError, ValueError):
        return None
    return None


# ---------------------------------------------------------------------------------------------- torch data
class _TextDataset:
    """Map-style dataset of ``(text, label)``; the collate function tokenizes and pads."""

    def __init__(self, samples: Sequence[tuple[str, int]]) -> None:
        self.samples = [(str(t), int(y)) for t, y in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.samples[i]


class TextBatchCollate:
    """``[(text, label)] -> ({"input_ids", "attention_mask"}, labels)`` with the deployment tokenizer, padded to the
    batch's longest text. Picklable (DataLoader workers): the tokenizer is found again from the spec."""

    def __init__(self, preprocess: dict[str, Any]) -> None:
        self.preprocess = dict(preprocess)

    def __call__(self, batch: Sequence[tuple[str, int]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        import torch

        ids, mask = encode_texts([t for t, _ in batch], self.preprocess)
        inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        return inputs, torch.tensor([y for _, y in batch], dtype=torch.long)


class BucketedSampler:
    """A shuffling sampler whose consecutive ``batch_size`` indices are texts of similar length.

    It flattens ``LengthBucketBatchSampler``'s batches, full ones first, so a DataLoader with the same batch size
    cuts exactly those batches; ``set_epoch`` (called by the trainer every epoch) fixes the order, so a resumed run
    sees the same batches.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        from edgetl.backbones.text import LengthBucketBatchSampler

        self.batches = LengthBucketBatchSampler(lengths, batch_size, shuffle=True, seed=seed)
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        batches = list(self.batches)
        full = [b for b in batches if len(b) == self.batch_size]
        for batch in full + [b for b in batches if len(b) != self.batch_size]:
            yield from batch

    def __len__(self) -> int:
        return len(self.batches.lengths)


# ---------------------------------------------------------------------------------------------- the task
class TextClassification(Task):
    name = "text_classification"
    sample_noun = "texts"
    padding_mask = "attention_mask"

    # ------------------------------------------------------------------ data
    def index_data(self, data: DataConfig) -> DatasetIndex:
        from edgetl.data import DatasetIndex
        from edgetl.data.text import read_text_dataset

        index = read_text_dataset(data.path, data.text, val_ratio=data.val_ratio, test_ratio=data.test_ratio,
                                  split_seed=data.split_seed, strict=data.strict)
        counts = {split: index.class_counts(split) for split in index.splits}
        log.info("class counts: %s", "; ".join(f"{split} {c}" for split, c in counts.items()))
        # the split record every stage reads (split.json) holds the texts themselves, as image indexes hold paths
        return DatasetIndex(source=index.source, classes=index.classes, splits=index.splits,
                            split_made=index.split_made, split_seed=index.split_seed, skipped=index.skipped,
                            fingerprint=index.fingerprint)

    def data_fingerprint(self, data: DataConfig) -> str:
        from edgetl.data.text import TEXT_SUFFIXES
        from edgetl.fsutil import sha256_json

        root = Path(data.path).expanduser()
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        elif root.is_file():
            files = [root]
        else:
            raise DataError(f"text data set {root} does not exist",
                            hint="pass a CSV/TSV/JSONL file or a directory of them")
        stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return sha256_json({"files": stats, "text": data.text.model_dump(mode="json") if data.text else None})

    def resolve_input(self, cfg: BuildConfig, target: TargetProfile, spec: BackboneSpec) -> ResolvedInput:
        native = int(getattr(spec, "max_seq_len", spec.input_size))
        if cfg.train.max_seq_len is not None:
            length, where = cfg.train.max_seq_len, "config train.max_seq_len"
        else:
            length, where = native, f"backbone {spec.name}"
        limit = _position_limit(spec)
        if limit is not None and length > limit:
            raise ConfigError(f"train.max_seq_len is {length}, but {spec.name} has {limit} positions",
                              hint=f"set train.max_seq_len to at most {limit}")
        return ResolvedInput(size=length, channels=1, batch_sizes=tuple(target.input.batch_sizes),
                             dynamic_batch=target.input.dynamic_batch,
                             sources=(("max_seq_len", where), ("batch_sizes", f"target {target.name} input")))

    def model_io(self, resolved: ResolvedInput, num_classes: int) -> ModelIO:
        """int64 ``input_ids`` and ``attention_mask``, batch and sequence dynamic; the shape's sequence entry is the
        longest input (``max_seq_len``), what latency and fixed-shape exports use."""
        from edgetl.artifacts import ModelIO, TensorSpec

        axes = {0: "batch", 1: "sequence"} if resolved.dynamic_batch else {}
        return ModelIO(
            inputs=tuple(TensorSpec(name=n, shape=(None, resolved.size), dtype="int64", dynamic_axes=axes)
                         for n in INPUT_NAMES),
            outputs=(TensorSpec(name=OUTPUT_NAME, shape=(None, num_classes), dynamic_axes={0: "batch"}),),
        )

    def preprocess(self, cfg: BuildConfig, spec: BackboneSpec, resolved: ResolvedInput) -> dict[str, Any]:
        from edgetl.backbones.text import pad_token_id

        tokenizer = source_tokenizer(cfg, spec)
        return {
            "kind": "text", "tokenizer": TOKENIZER_FILE, "max_seq_len": resolved.size,
            "lowercase": _lowercases(tokenizer), "pooling": getattr(spec, "pooling", "mean"),
            "pad_token_id": pad_token_id(tokenizer),
            # a fixed-shape model (a target without dynamic batch) takes every text padded to max_seq_len
            "padding": "longest" if resolved.dynamic_batch else "max_seq_len",
        }

    def write_model_files(self, cfg: BuildConfig, spec: BackboneSpec, preprocess: dict[str, Any], out_dir: Path,
                          write: bool = True) -> tuple[dict[str, Any], list[str]]:
        """Write ``tokenizer.json`` into the fine-tuning directory; the spec then names it and its sha256."""
        import hashlib

        from edgetl.fsutil import atomic_path

        path = Path(out_dir) / TOKENIZER_FILE
        data = source_tokenizer(cfg, spec).to_str().encode("utf-8")
        if write:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        located = {**preprocess, "tokenizer_path": str(path.resolve()),
                   "tokenizer_sha256": hashlib.sha256(data).hexdigest()}
        return located, [TOKENIZER_FILE]

    def model_files(self, preprocess: dict[str, Any]) -> list[tuple[Path, str]]:
        from edgetl.fsutil import sha256_file

        path = Path(str(preprocess.get("tokenizer_path", "")))
        if not path.is_file() or sha256_file(path) != preprocess.get("tokenizer_sha256"):
            raise ModelFileError(f"the model's tokenizer {path} is missing or modified",
                                 hint="rerun `edgetl train` (it writes the tokenizer beside the model)")
        return [(path, str(preprocess.get("tokenizer", TOKENIZER_FILE)))]

    def portable_preprocess(self, preprocess: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in preprocess.items() if k != "tokenizer_path"}

    def located_preprocess(self, preprocess: dict[str, Any], root: Path) -> dict[str, Any]:
        return {**preprocess, "tokenizer_path": str(Path(root) / str(preprocess.get("tokenizer", TOKENIZER_FILE)))}

    # ------------------------------------------------------------------ torch side
    def train_dataset(self, samples: Sequence[Any], preprocess: dict[str, Any], train: TrainConfig) -> Any:
        return _TextDataset(samples)

    def eval_dataset(self, samples: Sequence[Any], preprocess: dict[str, Any]) -> Any:
        # sorted by length, so that each evaluation batch pads little (accuracy does not depend on the order)
        lengths = token_counts([t for t, _ in samples], preprocess)
        return _TextDataset([samples[i] for i in sorted(range(len(samples)), key=lengths.__getitem__)])

    def collate(self, preprocess: dict[str, Any] | None = None) -> Any:
        if preprocess is None:
            raise ValueError("text batches need the preprocessing spec (the tokenizer)")
        return TextBatchCollate(preprocess)

    def train_sampler(self, samples: Sequence[Any], preprocess: dict[str, Any], batch_size: int, seed: int) -> Any:
        return BucketedSampler(token_counts([t for t, _ in samples], preprocess), batch_size, seed)

    def example_inputs(self, io: ModelIO, batch: int) -> dict[str, torch.Tensor]:
        import torch

        spec = io.inputs[0]
        length = EXAMPLE_SEQ_LEN if 1 in spec.dynamic_axes else int(spec.shape[1] or EXAMPLE_SEQ_LEN)
        if spec.shape[1] is not None:
            length = min(length, int(spec.shape[1]))
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(5, 100, (batch, length), generator=generator)  # ids every vocabulary has
        mask = torch.ones(batch, length, dtype=torch.long)
        if batch > 1 and 1 in spec.dynamic_axes:
            mask[-1, length // 2 :] = 0  # a padded row, so no "the mask is all ones" shortcut is traced
        return {"input_ids": ids, "attention_mask": mask}

    # ------------------------------------------------------------------ runtime side
    def eval_batches(self, samples: Sequence[Any], preprocess: dict[str, Any], batch_size: int) -> Iterator[EvalBatch]:
        """Every batch padded to one length: the longest text of ``samples`` (so the arrays stack across batches,
        as the benchmark needs), or ``max_seq_len`` for a fixed-shape model."""
        texts = [t for t, _ in samples]
        if preprocess.get("padding") == "max_seq_len":
            length = int(preprocess["max_seq_len"])
        else:
            length = max(token_counts(texts, preprocess), default=2)
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            ids, mask = encode_texts([t for t, _ in chunk], preprocess, pad_to=length)
            yield {"input_ids": ids, "attention_mask": mask}, np.asarray([y for _, y in chunk], dtype=np.int64)

    def benchmark_inputs(self, io: ModelIO, batch: int, rng: np.random.Generator,
                         seq_len: int | None = None) -> dict[str, np.ndarray]:
        """Random token ids, no padding, ``seq_len`` tokens (default: the model's longest input)."""
        length = int(seq_len or io.inputs[0].shape[1] or 128)
        ids = rng.integers(5, 100, size=(batch, length), dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones((batch, length), dtype=np.int64)}

    def assumed_preprocess(self, cfg: BuildConfig, size_hint: int) -> tuple[dict[str, Any], str]:
        raise ModelFileError("a bare text model file does not say which tokenizer it needs",
                             hint="benchmark the run directory, or a bundle, which carry the tokenizer")

    def io_for_file(self, inputs: dict[str, tuple[int | None, ...]], size_hint: int) -> ModelIO:
        from edgetl.artifacts import ModelIO, TensorSpec

        specs = tuple(TensorSpec(name=name, shape=(None, (list(shape) + [None, None])[1] or size_hint),
                                 dtype="int64", dynamic_axes={0: "batch", 1: "sequence"})
                      for name, shape in inputs.items())
        return ModelIO(inputs=specs, outputs=(TensorSpec(name=OUTPUT_NAME, shape=(None, None)),))

    # ------------------------------------------------------------------ deployment
    def predict_inputs(self, paths: Sequence[Path], texts: Sequence[str] = ()) -> list[Any]:
        """``--text`` strings, and files: ``.txt`` one text per line, CSV/TSV/JSONL read as labelled data (text in
        column 0, label in column 1, as ``edgetl build`` reads them), so the accuracy over them is printed."""
        items: list[Any] = [TextItem(t) for t in texts]
        return items + self.collect_predict_inputs(paths)

    def collect_predict_inputs(self, paths: Sequence[Path]) -> list[Any]:
        from edgetl.data.text import TEXT_SUFFIXES, read_text_dataset

        items: list[Any] = []
        for p in paths:
            p = Path(p)
            if p.is_dir():
                raise DataError(f"{p} is a directory", hint="pass a .txt file (one text per line) or a CSV/TSV/JSONL")
            if p.suffix.lower() in TEXT_SUFFIXES:
                index = read_text_dataset(p, val_ratio=1e-9, test_ratio=0.0)  # no held-out split: every row stays in train
                rows = [row for split in index.splits.values() for row in split]
                items += [TextItem(text, index.classes[label], f"{p.name}") for text, label in rows]
            elif p.suffix.lower() in PREDICT_TEXT_SUFFIXES:
                try:
                    lines = p.read_text(encoding="utf-8").splitlines()
                except UnicodeDecodeError as exc:
                    raise DataError(f"{p} is not UTF-8 text: {exc}") from exc
                items += [TextItem(line.strip(), None, f"{p.name}:{n}") for n, line in enumerate(lines, 1)
                          if line.strip()]
            else:
                raise DataError(f"{p}: expected a .txt file or one of {', '.join(TEXT_SUFFIXES)}")
        return items

    def read_predict_input(self, item: Any, preprocess: dict[str, Any]) -> dict[str, np.ndarray]:
        text = item.text if isinstance(item, TextItem) else str(item)
        pad = int(preprocess["max_seq_len"]) if preprocess.get("padding") == "max_seq_len" else None
        ids, mask = encode_texts([text], preprocess, pad_to=pad)
        return {"input_ids": ids[0], "attention_mask": mask[0]}

    def predict_truth(self, item: Any, classes: Sequence[str]) -> str | None:
        label = getattr(item, "label", None)
        return label if label in classes else None

    def bundle_readme(self, preprocess: dict[str, Any], io: ModelIO, model_file: str, onnx_file: str | None,
                      uint8_file: str | None = None) -> str:
        pp = preprocess
        tok = pp.get("tokenizer", TOKENIZER_FILE)
        pad = ("padded to the longest text of the batch (attention_mask 0 on padding)"
               if pp.get("padding") != "max_seq_len" else f"padded to {pp['max_seq_len']} tokens")
        lines = [
            "## Preprocessing (`preprocess.json`)",
            "",
            f"Tokenize with `{tok}` (Hugging Face `tokenizers`; it applies the normalisation"
            f"{', lower-casing' if pp.get('lowercase') else ''} and adds `[CLS]`/`[SEP]`), truncate to "
            f"{pp['max_seq_len']} tokens, {pad} with id {pp.get('pad_token_id', 0)}. Inputs `input_ids` and "
            "`attention_mask`: int64, batch x sequence (both axes dynamic). Output `logits`: one per class, in "
            f"`labels.json` order. The encoder's token states are {pp.get('pooling', 'mean')}-pooled inside the model.",
            "",
            "## Python",
            "",
            "Needs only `tokenizers`, `numpy` and `onnxruntime`:",
            "",
            "```python",
            "import json, numpy as np, onnxruntime as ort",
            "from tokenizers import Tokenizer",
            "",
            "pp = json.load(open('preprocess.json')); labels = json.load(open('labels.json'))",
            f"tok = Tokenizer.from_file('{tok}')",
            "tok.no_padding(); tok.enable_truncation(pp['max_seq_len'])",
            f"sess = ort.InferenceSession('{onnx_file or model_file}', providers=['CPUExecutionProvider'])",
            "",
            "def classify(texts):",
            "    enc = tok.encode_batch(texts)",
            "    n = max(len(e.ids) for e in enc) if pp['padding'] == 'longest' else pp['max_seq_len']",
            "    ids = np.full((len(enc), n), pp['pad_token_id'], np.int64); mask = np.zeros((len(enc), n), np.int64)",
            "    for i, e in enumerate(enc):",
            "        ids[i, :len(e.ids)] = e.ids; mask[i, :len(e.ids)] = 1",
            "    logits = sess.run(None, {'input_ids': ids, 'attention_mask': mask})[0]",
            "    return [labels[int(k)] for k in logits.argmax(1)]",
            "",
            "print(classify(['a gripping, beautifully acted film']))",
            "```",
            "",
            "Or, with edgetl installed: `edgetl predict path/to/bundle --text \"...\"` or `--file lines.txt` (one text "
            "per line; a CSV/TSV/JSONL with labels prints the accuracy too).",
            "",
        ]
        if onnx_file:
            lines += [
                "## C++ (ONNX Runtime)",
                "",
                f"Tokenize with the same `{tok}`: the Hugging Face `tokenizers` Rust crate reads it (call it through "
                "a small C ABI), or a C++ port such as `tokenizers-cpp` (mlc-ai), which loads `tokenizer.json` "
                "directly. Then feed the ids and mask as int64 tensors:",
                "",
                "```cpp",
                "#include <onnxruntime_cxx_api.h>",
                "#include <vector>",
                "// ids: token ids from the tokenizer (with [CLS]/[SEP]), truncated to max_seq_len; batch 1, no padding",
                "int classify(const std::vector<int64_t>& ids) {",
                "  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, \"edgetl\");",
                "  Ort::SessionOptions opts;",
                f"  Ort::Session session(env, \"{onnx_file}\", opts);",
                "  std::vector<int64_t> mask(ids.size(), 1);",
                "  std::array<int64_t, 2> shape{1, static_cast<int64_t>(ids.size())};",
                "  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);",
                "  Ort::Value inputs[] = {",
                "      Ort::Value::CreateTensor<int64_t>(mem, const_cast<int64_t*>(ids.data()), ids.size(),",
                "                                        shape.data(), shape.size()),",
                "      Ort::Value::CreateTensor<int64_t>(mem, mask.data(), mask.size(), shape.data(), shape.size())};",
                "  const char* ins[] = {\"input_ids\", \"attention_mask\"}; const char* outs[] = {\"logits\"};",
                "  auto out = session.Run(Ort::RunOptions{nullptr}, ins, inputs, 2, outs, 1);",
                *CPP_LOGITS_TO_CLASS,
            ]
        return "\n".join(lines)


TASKS.register(TextClassification.name, TextClassification(), aliases=("text",))
