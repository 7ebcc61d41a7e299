"""Image classification: ImageFolder data (or a built-in set), NCHW float input ``input``, logits ``logits``.

This module is the only place outside ``edgetl.data`` that knows a model input is an RGB image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.errors import ConfigError
from edgetl.tasks.base import CPP_LOGITS_TO_CLASS, TASKS, EvalBatch, ResolvedInput, Task

if TYPE_CHECKING:
    import torch

    from edgetl.artifacts import ModelIO
    from edgetl.backbones import BackboneSpec
    from edgetl.config import BuildConfig, DataConfig, TrainConfig
    from edgetl.data import DatasetIndex
    from edgetl.export.uint8_input import PixelFront
    from edgetl.targets import TargetProfile

INPUT_NAME, OUTPUT_NAME = "input", "logits"
# assumed for a model file that does not state its preprocessing (the torchvision/timm default)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _pp(preprocess: dict[str, Any]) -> Any:
    from edgetl.data import Preprocess

    return Preprocess.model_validate(preprocess)


class ImageClassification(Task):
    name = "image_classification"
    sample_noun = "images"

    def index_data(self, data: DataConfig) -> DatasetIndex:
        from edgetl.data import resolve_dataset

        return resolve_dataset(data)

    def data_fingerprint(self, data: DataConfig) -> str:
        from edgetl.data import dataset_fingerprint

        return dataset_fingerprint(data.path)

    def resolve_input(self, cfg: BuildConfig, target: TargetProfile, spec: BackboneSpec) -> ResolvedInput:
        if cfg.train.image_size is not None:
            size, where = cfg.train.image_size, "config train.image_size"
        elif target.input.image_size:
            size, where = target.input.image_size, f"target {target.name} input.image_size"
        else:
            size, where = spec.input_size, f"backbone {spec.name}"
        channels = target.input.channels
        if channels != spec.in_channels:
            raise ConfigError(
                f"target {target.name} ({target.source or 'profile'}): field 'input.channels' is {channels}, but "
                f"backbone {spec.name} takes {spec.in_channels}-channel images",
                hint="grayscale images are converted to RGB by the preprocessing: set input.channels to "
                     f"{spec.in_channels}")
        return ResolvedInput(size=size, channels=channels, batch_sizes=tuple(target.input.batch_sizes),
                             dynamic_batch=target.input.dynamic_batch,
                             sources=(("size", where), ("channels", f"target {target.name} input.channels")))

    def model_io(self, resolved: ResolvedInput, num_classes: int) -> ModelIO:
        from edgetl.artifacts import ModelIO, TensorSpec

        s = resolved.size
        return ModelIO(
            inputs=(TensorSpec(name=INPUT_NAME, shape=(None, resolved.channels, s, s), dynamic_axes={0: "batch"}),),
            outputs=(TensorSpec(name=OUTPUT_NAME, shape=(None, num_classes), dynamic_axes={0: "batch"}),),
        )

    def preprocess(self, cfg: BuildConfig, spec: BackboneSpec, resolved: ResolvedInput) -> dict[str, Any]:
        from edgetl.data import Preprocess

        pp = Preprocess.make(resolved.size, cfg.data.crop_pct, spec.mean, spec.std, spec.interpolation)
        return pp.model_dump(mode="json")

    def train_dataset(self, samples: Sequence[Any], preprocess: dict[str, Any], train: TrainConfig) -> Any:
        from edgetl.data import ImageDataset
        from edgetl.data.augment import train_transform_for

        return ImageDataset(list(samples), train_transform_for(train, _pp(preprocess)))

    def eval_dataset(self, samples: Sequence[Any], preprocess: dict[str, Any]) -> Any:
        from edgetl.data import ImageDataset, eval_transform

        return ImageDataset(list(samples), eval_transform(_pp(preprocess)))

    def example_inputs(self, io: ModelIO, batch: int) -> dict[str, torch.Tensor]:
        import torch

        return {t.name: torch.randn(t.with_batch(batch)) for t in io.inputs}

    def eval_batches(self, samples: Sequence[Any], preprocess: dict[str, Any], batch_size: int) -> Iterator[EvalBatch]:
        from edgetl.data import iter_eval_batches

        for images, labels in iter_eval_batches(list(samples), _pp(preprocess), batch_size):
            yield {INPUT_NAME: images}, labels

    def pixel_front(self, io: ModelIO, preprocess: dict[str, Any]) -> PixelFront | None:
        from edgetl.artifacts import ModelIO, TensorSpec
        from edgetl.export.uint8_input import PixelFront

        pp = _pp(preprocess)
        spec = io.inputs[0]
        _, c, h, w = spec.shape
        pixels = TensorSpec(name=spec.name, shape=(spec.shape[0], h, w, c), dtype="uint8",
                            dynamic_axes=dict(spec.dynamic_axes))
        return PixelFront(input_name=spec.name, io=ModelIO(inputs=(pixels,), outputs=io.outputs), scale=pp.scale,
                          mean=tuple(pp.mean), std=tuple(pp.std))

    def eval_pixel_batches(self, samples: Sequence[Any], preprocess: dict[str, Any],
                           batch_size: int) -> Iterator[tuple[EvalBatch, dict[str, np.ndarray]]]:
        from edgetl.data import iter_eval_pixel_batches, normalise_pixels

        pp = _pp(preprocess)
        for pixels, labels in iter_eval_pixel_batches(list(samples), pp, batch_size):
            images = np.stack([normalise_pixels(p, pp) for p in pixels])  # = preprocess_image of each sample
            yield ({INPUT_NAME: images}, labels), {INPUT_NAME: pixels}

    def benchmark_inputs(self, io: ModelIO, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {t.name: rng.standard_normal(t.with_batch(batch), dtype=np.float32) for t in io.inputs}

    def assumed_preprocess(self, cfg: BuildConfig, size_hint: int) -> tuple[dict[str, Any], str]:
        from edgetl.data import Preprocess

        pp = Preprocess.make(size_hint, cfg.data.crop_pct, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
        return pp.model_dump(mode="json"), (f"the model carries no preprocessing metadata: assumed ImageNet mean/std, "
                                            f"{size_hint}px, crop {cfg.data.crop_pct}")

    def io_for_file(self, inputs: dict[str, tuple[int | None, ...]], size_hint: int) -> ModelIO:
        from edgetl.artifacts import ModelIO, TensorSpec

        specs = []
        for name, shape in inputs.items():
            dims = list(shape) or [None, 3, None, None]
            filled = [dims[0]] + [d if d is not None else (3 if i == 1 else size_hint) for i, d in enumerate(dims)][1:]
            specs.append(TensorSpec(name=name, shape=tuple(filled), dynamic_axes={0: "batch"} if dims[0] is None else {}))
        return ModelIO(inputs=tuple(specs), outputs=(TensorSpec(name=OUTPUT_NAME, shape=(None, None)),))

    def collect_predict_inputs(self, paths: Sequence[Path]) -> list[Path]:
        from edgetl.data import IMAGE_EXTENSIONS

        out: list[Path] = []
        for p in paths:
            if p.is_dir():
                out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTENSIONS and q.is_file()))
            else:
                out.append(p)
        return out

    def read_predict_input(self, item: Path, preprocess: dict[str, Any]) -> dict[str, np.ndarray]:
        from edgetl.data import load_image, preprocess_image, to_rgb

        return {INPUT_NAME: preprocess_image(to_rgb(load_image(item)), _pp(preprocess))}

    def predict_truth(self, item: Path, classes: Sequence[str]) -> str | None:
        truth = Path(item).parent.name  # ImageFolder layout: the folder names the class
        return truth if truth in classes else None

    def bundle_readme(self, preprocess: dict[str, Any], io: ModelIO, model_file: str, onnx_file: str | None,
                      uint8_file: str | None = None) -> str:
        pp = preprocess
        c = io.inputs[0].shape[1]
        s = pp["image_size"]
        lines = [
            "## Preprocessing (`preprocess.json`)",
            "",
            f"RGB, resize the short side to {pp['resize_size']} px ({pp['interpolation']}), centre-crop "
            f"{s}x{s}, scale to 0..1, subtract mean {list(pp['mean'])}, divide by std "
            f"{list(pp['std'])}, layout NCHW float32 (input `{io.inputs[0].name}`, shape N x {c} x "
            f"{s} x {s}). Output: one logit per class, in `labels.json` order.",
            "",
        ]
        if uint8_file:
            lines += [
                "## Raw camera pixels (uint8 input)",
                "",
                f"`{uint8_file}` is the same model taking the resized, centre-cropped RGB pixels as they come: uint8, "
                f"layout NHWC (input `{io.inputs[0].name}`, shape N x {s} x {s} x {c}). Its graph scales, "
                "normalises and transposes them itself, so only the resize and the crop are left to the device code. "
                "It gives the same predictions as the float-input model on the evaluation split "
                "(`manifest.json`, `uint8_input`).",
                "",
            ]
        lines += [
            "## Python",
            "",
            "```python",
            "import json, numpy as np, onnxruntime as ort",
            "from PIL import Image",
            "",
            "pp = json.load(open('preprocess.json')); labels = json.load(open('labels.json'))",
            "img = Image.open('image.jpg').convert('RGB')",
            "s = pp['resize_size'] / min(img.size)",
            "img = img.resize((max(pp['image_size'], round(img.width * s)), max(pp['image_size'], round(img.height * s))),",
            "                 Image.Resampling.BICUBIC if pp['interpolation'] == 'bicubic' else Image.Resampling.BILINEAR)",
            "l, t = (img.width - pp['image_size']) // 2, (img.height - pp['image_size']) // 2",
            "img = img.crop((l, t, l + pp['image_size'], t + pp['image_size']))",
            "x = (np.asarray(img, np.float32) / 255 - pp['mean']) / pp['std']",
            "x = x.transpose(2, 0, 1)[None].astype(np.float32)",
            f"sess = ort.InferenceSession('{onnx_file or model_file}', providers=['CPUExecutionProvider'])",
            "logits = sess.run(None, {sess.get_inputs()[0].name: x})[0][0]",
            "print(labels[int(logits.argmax())])",
            *([f"# or the uint8 variant, fed the cropped pixels: ort.InferenceSession('{uint8_file}')"
               ".run(None, {'" + io.inputs[0].name + "': np.asarray(img, np.uint8)[None]})"] if uint8_file else []),
            "```",
            "",
            "Or, with edgetl installed: `edgetl predict path/to/bundle image.jpg`.",
            "",
        ]
        if uint8_file:
            lines += [
                "## C++ (ONNX Runtime, uint8 camera frames)",
                "",
                "```cpp",
                "#include <onnxruntime_cxx_api.h>",
                "#include <algorithm>",
                "#include <array>",
                "#include <cstdint>",
                "#include <vector>",
                f"// rgb: a frame resized and centre-cropped to {s}x{s} (preprocess.json), RGB bytes, row-major",
                f"// {s} x {s} x {c} (NHWC uint8): the model scales, normalises and transposes it in its graph",
                "int classify(const std::vector<uint8_t>& rgb) {",
                "  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, \"edgetl\");",
                "  Ort::SessionOptions opts;",
                f"  Ort::Session session(env, \"{uint8_file}\", opts);",
                "  Ort::AllocatorWithDefaultOptions alloc;",
                "  auto in_name = session.GetInputNameAllocated(0, alloc);",
                "  auto out_name = session.GetOutputNameAllocated(0, alloc);",
                f"  std::array<int64_t, 4> shape{{1, {s}, {s}, {c}}};",
                "  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);",
                "  Ort::Value input = Ort::Value::CreateTensor<uint8_t>(mem, const_cast<uint8_t*>(rgb.data()),",
                "                                                       rgb.size(), shape.data(), shape.size());",
                "  const char* ins[] = {in_name.get()}; const char* outs[] = {out_name.get()};",
                "  auto out = session.Run(Ort::RunOptions{nullptr}, ins, &input, 1, outs, 1);",
                *CPP_LOGITS_TO_CLASS,
            ]
        elif onnx_file:
            lines += [
                "## C++ (ONNX Runtime)",
                "",
                "```cpp",
                "#include <onnxruntime_cxx_api.h>",
                "#include <vector>",
                f"// x: preprocessed image as above, NCHW float32, shape {{1, {c}, H, W}}",
                "int classify(const std::vector<float>& x, int64_t h, int64_t w) {",
                "  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, \"edgetl\");",
                "  Ort::SessionOptions opts;",
                f"  Ort::Session session(env, \"{onnx_file}\", opts);",
                "  Ort::AllocatorWithDefaultOptions alloc;",
                "  auto in_name = session.GetInputNameAllocated(0, alloc);",
                "  auto out_name = session.GetOutputNameAllocated(0, alloc);",
                f"  std::array<int64_t, 4> shape{{1, {c}, h, w}};",
                "  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);",
                "  Ort::Value input = Ort::Value::CreateTensor<float>(mem, const_cast<float*>(x.data()), x.size(),",
                "                                                     shape.data(), shape.size());",
                "  const char* ins[] = {in_name.get()}; const char* outs[] = {out_name.get()};",
                "  auto out = session.Run(Ort::RunOptions{nullptr}, ins, &input, 1, outs, 1);",
                *CPP_LOGITS_TO_CLASS,
            ]
        return "\n".join(lines)


TASKS.register(ImageClassification.name, ImageClassification(), aliases=("image",))
