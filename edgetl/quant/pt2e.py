"""torch.export / PT2E plumbing: capture with a dynamic batch, prepare, freeze, convert, save and load programs.

Errors from torch.export and the ONNX exporter are deep stack traces; ``unsupported_op`` pulls out the operator
that failed so the stage can say which op (and which stage) to fix.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.errors import ExportError, ModelFileError
from edgetl.fsutil import atomic_path

if TYPE_CHECKING:
    import torch
    from torch.export import ExportedProgram
    from torch.fx import GraphModule

_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.]+)', overload='(\w+)'\)"),
    re.compile(r"target=torch\.ops\.([\w.]+)"),
    re.compile(r"torch\.ops\.([\w]+\.[\w]+(?:\.[\w]+)?)"),
    re.compile(r"\b(aten\.[\w]+(?:\.[\w]+)?)"),
)


def unsupported_op(exc: BaseException) -> str | None:
    """The operator an export error is about (``aten.cummax.default``), searched through the cause chain."""
    seen: set[int] = set()
    node: BaseException | None = exc
    texts: list[str] = []
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        texts.append(str(node))
        node = node.__cause__ or node.__context__
    for text in reversed(texts):  # the innermost cause names the op most precisely
        for pattern in _OP_PATTERNS:
            match = pattern.search(text)
            if match:
                return ".".join(g for g in match.groups() if g)
    return None


def first_line(exc: BaseException) -> str:
    """The informative summary of an exporter exception (the ``Exception summary`` line where there is one)."""
    text = str(exc)
    marker = "## Exception summary"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("⬆", "(Refer"))]
    return re.sub(r"\x1b\[[0-9;]*m", "", lines[0] if lines else type(exc).__name__)[:300]


def export_failure(stage: str, what: str, exc: BaseException) -> ExportError:
    op = unsupported_op(exc)
    if op:
        return ExportError(
            f"{stage}: cannot export {what}: operator {op} is not supported ({first_line(exc)})",
            hint=f"replace {op} in the model with supported ops, or keep that module out of the exported graph",
        )
    return ExportError(f"{stage}: cannot export {what}: {first_line(exc)}",
                       hint="the model must be traceable by torch.export (no data-dependent Python control flow)")


def batch_dim(dynamic: bool) -> Any:
    """``dynamic_shapes`` for a single input: a dynamic batch dimension, or None for a fixed shape."""
    if not dynamic:
        return None
    from torch.export import Dim

    return ({0: Dim("batch", min=1, max=1024)},)


def example_args(example: Any) -> tuple[Any, ...]:
    """Positional arguments from an example: one tensor, a tuple, or named inputs (a dict, in call order)."""
    if isinstance(example, dict):
        return tuple(example.values())
    return tuple(example) if isinstance(example, (tuple, list)) else (example,)


def dynamic_shapes_for(example: Any, io: Any = None, dynamic: bool = True) -> Any:
    """``dynamic_shapes`` for ``example``: every axis the ``ModelIO`` marks dynamic, one ``Dim`` per axis name
    (shared between inputs, like the batch of ``input_ids`` and ``attention_mask``); just the batch without ``io``."""
    if not dynamic:
        return None
    args = example_args(example)
    if io is None:
        return batch_dim(True) if len(args) == 1 else tuple({0: _dim("batch")} for _ in args)
    dims: dict[str, Any] = {}
    return tuple({axis: dims.setdefault(name, _dim(name)) for axis, name in spec.dynamic_axes.items()}
                 for spec in io.inputs)


def _dim(name: str) -> Any:
    from torch.export import Dim

    if name == "batch":
        return Dim(name, min=1, max=1024)
    # Other axes (a text model's sequence) take the range the model allows (a BERT's position table caps it):
    # torch.export infers it instead of failing on a guessed bound.
    return Dim.DYNAMIC


def capture(model: torch.nn.Module, example: Any, *, stage: str, what: str,
            dynamic: bool = True, io: Any = None) -> ExportedProgram:
    """``torch.export.export`` with the dynamic axes of ``io`` (default: the batch); an untraceable model becomes
    an ``ExportError``. ``example``: a tensor, or named inputs."""
    import torch

    try:
        return torch.export.export(model, example_args(example), dynamic_shapes=dynamic_shapes_for(example, io, dynamic))
    except Exception as exc:  # torch.export raises many types (UserError, Unsupported, RuntimeError, ...)
        raise export_failure(stage, what, exc) from exc


QAT_PATTERN_EPS = 1e-5  # the BatchNorm eps torchao's QAT conv+BN pattern is written with


def match_qat_batchnorm_eps(model: torch.nn.Module) -> int:
    """Give every BatchNorm the eps that ``prepare_qat_pt2e``'s fused conv+BN pattern assumes, without changing
    what the model computes; returns how many layers changed.

    torchao 0.18 replaces conv+BN with a QAT pattern whose eps is fixed at 1e-5, whatever the layer's own eps.
    Measured on EfficientNet-Lite0 (TF port, eps 1e-3): the QAT graph with fake-quant off differed from the float
    model by 4.1 logits, so QAT trained, and chose ranges for, a different network. In eval mode BatchNorm uses only
    ``running_var + eps``, so moving the difference into ``running_var`` keeps the function exactly.
    """
    import torch

    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.eps != QAT_PATTERN_EPS:
            if module.running_var is not None:
                with torch.no_grad():
                    module.running_var.add_(module.eps - QAT_PATTERN_EPS)
            module.eps = QAT_PATTERN_EPS
            changed += 1
    return changed


def freeze_batchnorm_stats(model: GraphModule) -> int:
    """Use BatchNorm running statistics from now on (the QAT graph's equivalent of ``bn.eval()``)."""
    import torch

    bn_train = {torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit.default}
    changed = 0
    for node in model.graph.nodes:
        if node.op == "call_function" and node.target in bn_train and node.args[5] is True:
            args = list(node.args)
            args[5] = False
            node.args = tuple(args)
            changed += 1
    if changed:
        model.recompile()
    return changed


def save_program(model: torch.nn.Module, example: Any, path: Path, *, stage: str, model_io: Any = None) -> Path:
    """Re-export a converted int8 model with its dynamic axes (``model_io``) and ``torch.export.save`` it
    atomically."""
    import torch

    program = capture(model, example, stage=stage, what=path.name, io=model_io)
    buffer = io.BytesIO()  # torch.export.save warns about a file name not ending in .pt2 (the atomic temp name)
    torch.export.save(program, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def load_program(path: Path) -> ExportedProgram:
    """``torch.export.load`` a quantized program; a missing, truncated or foreign file is a ``ModelFileError``."""
    import torch
    import torchao.quantization.pt2e  # noqa: F401  (registers the quantized_decomposed ops the file refers to)

    if not path.is_file():
        raise ModelFileError(f"quantized program {path} does not exist", hint="run `edgetl quantize` first")
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # zip, pickle and deserialisation errors all mean "not a usable program"
        raise ModelFileError(f"quantized program {path} is corrupt or truncated: {first_line(exc)}",
                             hint="rerun `edgetl quantize`") from exc


# ------------------------------------------------------------------------------------------ pattern-graph cache
_PATTERN_CACHE: dict[Any, Any] = {}


def _pattern_key(pattern: Any, example_inputs: tuple[Any, ...], is_cuda: bool, kwargs: dict[str, Any]) -> Any:
    """What a pattern graph depends on: the pattern's code and closure values, and its inputs' shapes and dtypes
    (their values are random and only traced). None when a closure value is not hashable (then no caching)."""
    import torch

    def spec(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape), value.dtype, value.device.type)
        return ("value", value)

    fn = pattern.fn if type(pattern).__name__ == "WrapperModule" else pattern  # torchao wraps some in a module
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    cells = tuple(c.cell_contents for c in (fn.__closure__ or ()))
    key = (code, cells, tuple(spec(x) for x in example_inputs), is_cuda,
           tuple(sorted((k, spec(v)) for k, v in kwargs.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def install_pattern_cache() -> bool:
    """Make torchao's PT2E pattern graphs once per process instead of at every prepare/convert.

    ``prepare_qat_pt2e`` and ``convert_pt2e`` match conv-BatchNorm patterns by ``torch.export``-ing every pattern
    variant (per-channel or not, bias or not, BatchNorm training or not, for conv1d/2d and their transposes) each
    time they run: 76 exports of about a second each per ``convert_pt2e``, the same graphs every time. QAT converts
    once per judged epoch, so most of a tiny model's quantize stage was spent re-tracing them (measured with
    cProfile: 360 of 475 s). The graphs depend only on the pattern and its inputs' shapes, so they are kept here
    (keyed by the pattern's code, closure values and input specs) and each caller gets its own deep copy: the
    matching code may edit what it is given. The fold of a conv kind the graph does not contain (conv1d and the
    transposes, in an image CNN) is skipped, so the first convert traces a quarter of the patterns. Measured in
    ``benchmarks/reported/pattern_cache.json``. Returns False, changing nothing, where torchao's private helper
    is not where this version expects it.
    """
    import copy
    import importlib

    try:
        utils = importlib.import_module("torchao.quantization.pt2e.utils")
        qat_utils = importlib.import_module("torchao.quantization.pt2e.qat_utils")
    except ImportError:
        return False
    original = getattr(utils, "_get_aten_graph_module_for_pattern", None)
    if original is None or getattr(original, "_edgetl_cached", False):
        return original is not None

    def cached(pattern: Any, example_inputs: tuple[Any, ...], is_cuda: bool = False, **kwargs: Any) -> Any:
        key = _pattern_key(pattern, example_inputs, is_cuda, kwargs)
        if key is None:
            return original(pattern, example_inputs, is_cuda, **kwargs)
        if key not in _PATTERN_CACHE:
            _PATTERN_CACHE[key] = original(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(_PATTERN_CACHE[key])

    cached._edgetl_cached = True  # type: ignore[attr-defined]
    cached.__wrapped__ = original  # type: ignore[attr-defined]
    utils._get_aten_graph_module_for_pattern = cached  # type: ignore[attr-defined]  # export_utils imports it from here at each call
    if getattr(qat_utils, "_get_aten_graph_module_for_pattern", None) is original:
        qat_utils._get_aten_graph_module_for_pattern = cached  # type: ignore[attr-defined]  # imported by name when qat_utils loaded
    fold = getattr(qat_utils, "_fold_conv_bn_qat_helper", None)
    if fold is not None and not getattr(fold, "_edgetl_cached", False):
        def fold_present(m: Any, conv_fn: Any, example_inputs: Any, is_cuda: bool) -> Any:
            # convert_pt2e folds conv1d, conv2d and both transposes in turn, tracing 24 pattern graphs for each;
            # a graph with no such conv (nor a generic aten.convolution) has nothing for them to match
            name = getattr(conv_fn, "__name__", "")
            present = any(str(n.target).startswith((f"aten.{name}.", "aten.convolution."))
                          for n in m.graph.nodes if n.op == "call_function")
            return fold(m, conv_fn, example_inputs, is_cuda) if present or not name else m

        fold_present._edgetl_cached = True  # type: ignore[attr-defined]
        fold_present.__wrapped__ = fold  # type: ignore[attr-defined]
        qat_utils._fold_conv_bn_qat_helper = fold_present  # type: ignore[attr-defined]
    return True
