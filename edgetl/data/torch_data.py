"""torch views of a ``DatasetIndex``: a Dataset over samples and the evaluation transform."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl.data.preprocess import Preprocess, image_pixels, load_image, preprocess_image, to_rgb

if TYPE_CHECKING:
    from PIL import Image

    from edgetl.data.dataset import Sample


def open_sample(ref: str) -> Image.Image:
    """Open a sample reference (an image path or ``digits:<i>``) as an 8-bit RGB image."""
    if ref.startswith("digits:"):
        from edgetl.data.builtin import open_digit

        return open_digit(int(ref.split(":", 1)[1]))
    return to_rgb(load_image(ref))


class EvalTransform:
    """PIL image -> CHW float tensor, exactly ``preprocess_image`` (the bundle's and predict's preprocessing)."""

    def __init__(self, pp: Preprocess) -> None:
        self.pp = pp

    def __call__(self, img: Image.Image) -> Any:
        import torch

        return torch.from_numpy(preprocess_image(img, self.pp))


def eval_transform(pp: Preprocess) -> Callable[[Image.Image], Any]:
    """The evaluation transform for ``pp`` (picklable, for DataLoader workers)."""
    return EvalTransform(pp)


class ImageDataset:
    """A map-style dataset of ``(transform(RGB image), label)`` for each ``(ref, label)`` sample.

    A plain class (torch's ``DataLoader`` needs only ``__len__``/``__getitem__``), so it pickles for DataLoader
    workers started with ``spawn``/``forkserver`` and importing it does not import torch.
    """

    def __init__(self, samples: list[Sample], transform: Callable[[Image.Image], Any]) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        ref, label = self.samples[i]
        return self.transform(open_sample(ref)), label


def loader_settings(num_workers: int | None) -> dict[str, Any]:
    """DataLoader worker settings: ``num_workers`` (None: min(4, cpu count)) started with ``forkserver``.

    Forking a process that already runs ONNX Runtime, OpenVINO or OpenMP thread pools can crash the child, so
    workers start from a clean server process; they persist across epochs so that start-up is paid once. The
    server and the workers die with the process that started them, even after a ``kill -9``
    (``die_with_parent``).
    """
    import os

    workers = num_workers if num_workers is not None else min(4, os.cpu_count() or 1)
    if workers == 0:
        return {"num_workers": 0}
    _prepare_forkserver()
    return {"num_workers": workers, "multiprocessing_context": "forkserver", "persistent_workers": True,
            "worker_init_fn": worker_init}


# The forkserver is a child of the edgetl process, and DataLoader workers are children of the forkserver that
# hold its "alive" pipe open: after a hard kill of edgetl neither ever saw EOF, and torch's worker watchdog looks
# at the forkserver (its parent), which stayed alive. So each asks the kernel for SIGKILL when its parent dies.
_PARENT_ENV = "EDGETL_FORKSERVER_PARENT"
_SERVER_ENV = "EDGETL_FORKSERVER_PID"


def die_with_parent(expected_parent: int | None = None) -> None:
    """SIGKILL this process when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``; a no-op elsewhere).

    If the parent (``expected_parent`` when given) is already gone, exit now: the signal would never come.
    """
    import ctypes
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the worker dies with the forkserver it was forked from, and a peer that hangs
    up on its fd-sharing thread (edgetl stopping on Ctrl-C/SIGTERM mid-batch) prints no traceback."""
    import os
    import sys

    server = os.environ.get(_SERVER_ENV)
    die_with_parent(int(server) if server and server.isdigit() else None)
    sys.excepthook = _quiet_hangups(sys.excepthook)


def _start_worker(server: int) -> None:
    import sys

    die_with_parent(server)
    sys.excepthook = _quiet_hangups(sys.excepthook)


def _quiet_hangups(hook: Any) -> Any:
    """``sys.excepthook`` for a worker that drops the errors of edgetl having stopped or gone.

    Two paths report through ``sys.excepthook`` and printed a stray traceback after edgetl's own "interrupted"
    line: multiprocessing's ``resource_sharer`` thread, which hands batches to edgetl as file descriptors
    (``ConnectionResetError``, ``BrokenPipeError`` when edgetl stops mid-batch), and a worker still starting when
    edgetl stops (``FileNotFoundError``: the semaphores it was sent are already unlinked). A worker's real
    errors (a dataset that raises) travel to edgetl through torch's result queue instead and are not affected.
    """

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, (ConnectionError, EOFError, FileNotFoundError)):
            return
        hook(kind, value, tb)

    return excepthook


def _prepare_forkserver() -> None:
    """Before the forkserver starts: make it import this module (see ``_in_forkserver``), torch and torchvision
    (so a worker forked from it starts in a tenth of a second, not the seconds of importing them), and tell it
    our pid."""
    import multiprocessing
    import os

    os.environ[_PARENT_ENV] = str(os.getpid())
    preload = ["__main__", "torch", "torchvision.transforms", __name__]  # one missing is skipped by the server
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)


def _in_forkserver() -> None:
    import os
    import sys

    parent = os.environ.get(_PARENT_ENV)
    started_by_edgetl = parent and parent.isdigit() and int(parent) == os.getppid()
    if started_by_edgetl and sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules:
        server = os.getpid()
        os.environ[_SERVER_ENV] = str(server)  # inherited by the workers forked from it
        die_with_parent(int(parent))  # type: ignore[arg-type]
        # every worker, from its first instruction on (a worker still starting up when edgetl dies would
        # otherwise outlive the server, since torch's watchdog compares with a parent pid read too late)
        os.register_at_fork(after_in_child=lambda: _start_worker(server))


_in_forkserver()


def iter_eval_batches(
    samples: list[Sample], pp: Preprocess, batch_size: int = 32
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """NCHW float32 batches and their labels, for runtimes that take NumPy (ONNX Runtime, OpenVINO)."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        images = np.stack([preprocess_image(open_sample(ref), pp) for ref, _ in chunk])
        yield images, np.asarray([label for _, label in chunk], dtype=np.int64)


def iter_eval_pixel_batches(
    samples: list[Sample], pp: Preprocess, batch_size: int = 32
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """NHWC uint8 batches of the resized, centre-cropped pixels (before scaling and normalisation) and their labels:
    what a camera pipeline hands the uint8-input model variant."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        pixels = np.stack([image_pixels(open_sample(ref), pp) for ref, _ in chunk])
        yield pixels, np.asarray([label for _, label in chunk], dtype=np.int64)
