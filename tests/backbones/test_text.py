"""Text backbones: the classifier builds, pools only real tokens, pads per batch, and exports to ONNX/OpenVINO."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from edgetl.backbones import get_backbone
from edgetl.backbones.base import BackboneSpec
from edgetl.backbones.text import (
    LengthBucketBatchSampler,
    TextBackboneSpec,
    TextCollate,
    build_text_classifier,
    encode_batch,
    export_text_onnx,
    load_tokenizer,
    pad_token_id,
    token_lengths,
)
from edgetl.errors import WeightsError

SENTENCES = ["a good film", "this movie was very dull , too long and not funny at all", "fun", "the worst story"]


@pytest.fixture(scope="module")
def tiny_model():  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(0)
    return get_backbone("tiny_bert").build(3, "default").eval()


@pytest.fixture(scope="module")
def tiny_tokenizer():  # type: ignore[no-untyped-def]
    return load_tokenizer(get_backbone("tiny_bert"))


def _logits(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()


def test_entries_are_text_specs_with_a_task() -> None:
    for name in ("tiny_bert", "minilm_l6"):
        spec = get_backbone(name)
        assert isinstance(spec, TextBackboneSpec) and isinstance(spec, BackboneSpec)
        assert spec.task == "text_classification" and spec.pooling == "mean"
        assert spec.classifier == "classifier" and spec.blocks == "encoder.encoder.layer"
    assert get_backbone("minilm_l6").max_seq_len == 128
    assert get_backbone("tiny").task == "image_classification"
    assert get_backbone("all-minilm-l6-v2") is get_backbone("minilm_l6")


def test_tiny_bert_builds_with_head_and_blocks(tiny_model) -> None:  # type: ignore[no-untyped-def]
    from edgetl.backbones.text import TextClassifier

    spec = get_backbone("tiny_bert")
    assert isinstance(tiny_model, TextClassifier)
    assert tiny_model.get_submodule(spec.classifier).out_features == 3
    assert len(tiny_model.get_submodule(spec.blocks)) == 2  # "unfreeze the last N blocks" has 2 to choose from
    assert tiny_model.encoder.pooler is None  # the unused BERT pooler is dropped
    assert sum(p.numel() for p in tiny_model.parameters()) < 50_000


def test_padding_does_not_change_a_sentence_logits(tiny_model, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    alone = _logits(tiny_model, *encode_batch(tiny_tokenizer, SENTENCES[:1], 64))
    ids, mask = encode_batch(tiny_tokenizer, SENTENCES, 64)
    assert mask[0].sum() < mask.shape[1]  # the short sentence really is padded in the batch
    batched = _logits(tiny_model, ids, mask)
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-5)

    # Whatever sits in padded positions is ignored: garbage ids there change nothing.
    garbage = ids.copy()
    garbage[mask == 0] = 7
    np.testing.assert_allclose(_logits(tiny_model, garbage, mask), batched, atol=1e-5)


def test_cls_pooling_reads_the_first_token(tiny_model, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    import torch

    from edgetl.backbones.text import TextClassifier

    cls_model = TextClassifier(tiny_model.encoder, 3, pooling="cls").eval()
    ids, mask = encode_batch(tiny_tokenizer, SENTENCES, 64)
    with torch.no_grad():
        pooled = cls_model.embed(torch.from_numpy(ids), torch.from_numpy(mask))
        hidden = tiny_model.encoder(input_ids=torch.from_numpy(ids),
                                    attention_mask=torch.from_numpy(mask)).last_hidden_state
    torch.testing.assert_close(pooled, hidden[:, 0])
    with pytest.raises(ValueError, match="pooling"):
        TextClassifier(tiny_model.encoder, 3, pooling="max")


def test_encode_batch_pads_to_the_longest_and_truncates(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids, mask = encode_batch(tiny_tokenizer, ["fun", "a good film"], 64)
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == (2, 5)  # [CLS] a good film [SEP]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert ids[0, 3:].tolist() == [pad_token_id(tiny_tokenizer)] * 2

    long_ids, _ = encode_batch(tiny_tokenizer, ["good " * 100], 16)
    assert long_ids.shape == (1, 16)
    assert long_ids[0, -1] == tiny_tokenizer.token_to_id("[SEP]")
    assert token_lengths(tiny_tokenizer, ["fun", "good " * 100], 16) == [3, 16]


def test_collate_pads_each_batch_dynamically(tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    import torch

    collate = pickle.loads(pickle.dumps(TextCollate(tiny_tokenizer, 64)))  # DataLoader workers pickle it
    short_inputs, labels = collate([("fun", 1), ("good", 0)])
    long_inputs, _ = collate([("fun", 1), (SENTENCES[1], 0)])

    assert short_inputs["input_ids"].shape == (2, 3)
    assert long_inputs["input_ids"].shape[1] > 10
    assert short_inputs["attention_mask"].dtype == torch.long
    assert labels.tolist() == [1, 0]


def test_length_buckets_group_similar_lengths_and_cover_every_sample() -> None:
    lengths = [(i * 37) % 100 + 2 for i in range(200)]
    sampler = LengthBucketBatchSampler(lengths, batch_size=8, seed=1, pool_batches=5)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert len(sampler) == len(batches) == 25
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.2 * sum(lengths)  # a random batching pads to nearly twice the tokens

    assert list(sampler) == batches  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != batches

    ordered = list(LengthBucketBatchSampler(lengths, batch_size=8, shuffle=False))
    flat = [lengths[i] for b in ordered for i in b]
    assert flat == sorted(lengths)
    assert len(LengthBucketBatchSampler(lengths[:20], batch_size=8, drop_last=True)) == 2


def test_dataloader_with_collate_and_bucket_sampler(tiny_model, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    import torch
    from torch.utils.data import DataLoader

    samples = [(text, i % 3) for i, text in enumerate(SENTENCES * 3)]
    lengths = token_lengths(tiny_tokenizer, [t for t, _ in samples], 64)
    loader = DataLoader(samples, batch_sampler=LengthBucketBatchSampler(lengths, 4),  # type: ignore[arg-type]
                        collate_fn=TextCollate(tiny_tokenizer, 64))
    seen = 0
    with torch.no_grad():
        for inputs, labels in loader:
            assert tiny_model(**inputs).shape == (len(labels), 3)
            seen += len(labels)
    assert seen == len(samples)


def test_weights_none_file_and_missing(tmp_path: Path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    import torch

    spec = get_backbone("tiny_bert")
    assert isinstance(spec, TextBackboneSpec)
    path = tmp_path / "model.pt"
    torch.save(tiny_model.state_dict(), path)
    reloaded = build_text_classifier(spec, 5, str(path))  # another head size: the head is not loaded
    torch.testing.assert_close(reloaded.encoder.state_dict(), tiny_model.encoder.state_dict())
    assert reloaded.classifier.out_features == 5
    with pytest.raises(WeightsError, match="do not exist"):
        build_text_classifier(spec, 2, str(tmp_path / "nowhere"))
    with pytest.raises(WeightsError, match="not a Hugging Face model directory"):
        build_text_classifier(spec, 2, str(tmp_path))


def test_a_hugging_face_directory_as_weights_and_tokenizer(tmp_path: Path, tiny_model, tiny_tokenizer) -> None:  # type: ignore[no-untyped-def]
    import torch

    tiny_model.encoder.save_pretrained(tmp_path / "hf")
    tiny_tokenizer.save(str(tmp_path / "hf" / "tokenizer.json"))
    model = get_backbone("minilm_l6").build(3, str(tmp_path / "hf")).eval()  # any BERT-class directory
    torch.testing.assert_close(model.encoder.state_dict(), tiny_model.encoder.state_dict())

    tokenizer = load_tokenizer(tmp_path / "hf")
    assert tokenizer.encode("a good film").ids == tiny_tokenizer.encode("a good film").ids
    (tmp_path / "hf" / "tokenizer.json").unlink()
    vocab = sorted(tiny_tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    (tmp_path / "hf" / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
    assert load_tokenizer(tmp_path / "hf").encode("a good film").ids == tiny_tokenizer.encode("a good film").ids
    with pytest.raises(WeightsError, match="no tokenizer"):
        load_tokenizer(tmp_path)


def test_onnx_export_runs_in_onnxruntime_and_openvino_at_two_lengths(  # type: ignore[no-untyped-def]
    tmp_path: Path, tiny_model, tiny_tokenizer
) -> None:
    import onnx
    import onnxruntime as ort
    import openvino as ov

    path = export_text_onnx(tiny_model, tmp_path / "text.onnx")
    graph = onnx.load(str(path)).graph
    inputs = {i.name: i.type.tensor_type for i in graph.input}
    assert list(inputs) == ["input_ids", "attention_mask"]
    assert all(t.elem_type == onnx.TensorProto.INT64 for t in inputs.values())
    assert [d.dim_param for d in inputs["input_ids"].shape.dim] == ["batch", "sequence"]
    assert [o.name for o in graph.output] == ["logits"]

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # f32 stated: on a bf16-capable CPU OpenVINO's default precision is bf16
    compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    cases = [SENTENCES[:1], SENTENCES, ["good " * 100, "fun", "bad film"]]  # batch 1/4/3, lengths 5/15/64
    lengths = set()
    for texts in cases:
        ids, mask = encode_batch(tiny_tokenizer, texts, 64)
        lengths.add(ids.shape[1])
        expected = _logits(tiny_model, ids, mask)
        feed = {"input_ids": ids, "attention_mask": mask}
        np.testing.assert_allclose(session.run(["logits"], feed)[0], expected, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(compiled(feed)[0], expected, atol=1e-4, rtol=1e-4)
    assert len(lengths) == 3


@pytest.mark.slow
def test_minilm_real_weights_embed_similar_sentences_close() -> None:
    import torch

    spec = get_backbone("minilm_l6")
    model = spec.build(2, "default").eval()
    tokenizer = load_tokenizer(spec)
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    ids, mask = encode_batch(tokenizer, texts, spec.max_seq_len)
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model.embed(torch.from_numpy(ids), torch.from_numpy(mask)), dim=-1)
    similar, dissimilar = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    # Measured: about 0.8 vs 0.0; a random encoder gives near-equal similarities.
    assert similar > 0.6 and dissimilar < 0.3, (similar, dissimilar)

    random_model = spec.build(2, "none").eval()
    with torch.no_grad():
        rnd = torch.nn.functional.normalize(random_model.embed(torch.from_numpy(ids), torch.from_numpy(mask)), dim=-1)
    assert abs(float(rnd[0] @ rnd[1]) - float(rnd[0] @ rnd[2])) < similar - dissimilar
