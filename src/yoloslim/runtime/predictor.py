"""Predictor: letterbox -> any runtime -> NMS -> boxes in each original image's pixels.

A ``Predictor`` may be shared between threads (calls into an OpenVINO one wait for each
other: it has one infer request); ``BatchingPredictor`` groups concurrent
requests (up to ``max_batch`` images or ``max_wait_ms``) into one runtime call,
reusing a preallocated input buffer, and hands each caller its own detections.
"""

from __future__ import annotations

import collections
import numbers
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from yoloslim.configs import brief, check_imgsz, int_problem
from yoloslim.data.transforms import letterbox
from yoloslim.errors import ConfigError, ModelError
from yoloslim.eval.postprocess import check_nms_settings, postprocess_in_image, scale_boxes
from yoloslim.runtime.backends import (
    check_static_imgsz,
    load_backend,
    refuse_end_to_end,
)
from yoloslim.runtime.images import IMAGE_SUFFIXES, ImageLike, is_single_image, iter_images

__all__ = [
    "as_artifact",
    "Detections",
    "Predictor",
    "BatchingPredictor",
    "IMAGE_SUFFIXES",
    "iter_images",
]


@dataclass
class Detections:
    """Detections of one image, in its original pixels.

    Attributes:
        boxes: ``(n, 4)`` xyxy. scores: ``(n,)``. classes: ``(n,)`` int. names: class names.
        source: the file path, when the image came from one.
        shape: original ``(height, width)``.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    names: list[str]
    shape: tuple[int, int]
    source: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # 2 boxes with 3 scores said "3 detections" (audit48 api F11)
        n = len(self.scores)
        shape = tuple(np.shape(self.boxes))
        if (shape != (n, 4) and not (n == 0 and 0 in shape)) or len(self.classes) != n:
            raise ValueError(
                f"Detections: boxes {shape}, scores ({n},) and classes ({len(self.classes)},) "
                "must be (n, 4), (n,) and (n,)"
            )
        low = float(np.min(np.asarray(self.classes))) if n else 0.0
        if low < 0:  # -1 was shown as names[-1]
            raise ValueError(f"Detections: class id {low:g} is negative")

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:  # not the whole arrays (a dataclass's repr printed them)
        h, w = self.shape
        where = f"{self.source}, " if self.source else ""
        return f"Detections({where}{len(self)} detection{'' if len(self) == 1 else 's'}, {w}x{h})"

    def to_yolo(self) -> str:
        """The detections as a YOLO label file: one ``cls cx cy w h`` line each, normalised
        by the image's size (the format ``data`` reads; scores are left out, so the file
        can serve as a training label). Boxes are clipped to the image first; one left with
        no width or height is no line (the data readers drop such a label)."""
        h, w = self.shape
        lines = []
        for (x0, y0, x1, y1), c in zip(self.boxes.tolist(), self.classes.tolist(), strict=True):
            x0, x1 = min(max(x0, 0.0), w), min(max(x1, 0.0), w)
            y0, y1 = min(max(y0, 0.0), h), min(max(y1, 0.0), h)
            if x1 <= x0 or y1 <= y0:
                continue
            cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
            lines.append(f"{int(c)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
        return "".join(lines)

    def to_list(self) -> list[dict]:
        return [
            {
                "box": [round(float(v), 2) for v in b],
                "score": round(float(s), 4),
                "class_id": int(c),
                "class": self.names[int(c)] if int(c) < len(self.names) else str(int(c)),
            }
            for b, s, c in zip(self.boxes, self.scores, self.classes, strict=True)
        ]


def check_count(name: str, value, *, allow_none: bool = False) -> None:
    """``value`` an integer >= 1 (or None when ``allow_none``), else :class:`ConfigError`."""
    problem = None if value is None and allow_none else int_problem(value)
    if problem:
        raise ConfigError(f"{name}={value!r} {problem}")


class Predictor:
    """Run a detector artifact (.pt, .torchscript, .onnx, .xml) on images.

    Args:
        artifact: A ``.pt`` checkpoint, ``.torchscript``, ``.onnx`` or OpenVINO ``.xml``.
        imgsz: Input size, a multiple of 32 (default: the artifact's). An ONNX/OpenVINO
            graph exported with a static input size runs at that size only.
        conf: Confidence threshold, in [0, 1].
        iou: NMS IoU threshold, in (0, 1].
        max_det: Detections kept per image, >= 1.
        threads: Intra-op threads (default: the runtime's choice). On a ``.pt`` or
            ``.torchscript`` artifact this calls ``torch.set_num_threads``, which is
            process-wide: it stays in force for every later torch call in the process.
            ONNX Runtime and OpenVINO set it for this artifact's session only.
        ov_precision: what OpenVINO computes an ``.xml`` in: ``"f32"`` gives the
            checkpoint's detections, where the plugin's default (bf16 on AVX512-BF16/AMX
            CPUs) can differ near the threshold; ``"bf16"``, ``"f16"``. None: the default.
        device: where the runtime runs: ``"cpu"``; ``"auto"`` (cuda where the runtime has a
            GPU here, else cpu; OpenVINO's AUTO for an ``.xml``); ``"cuda[:N]"`` for a ``.pt``,
            ``.torchscript`` or ``.onnx`` (ONNX Runtime's CUDA provider); an OpenVINO
            device name (``"GPU"``, ``"NPU"``) for an ``.xml``.

    Raises:
        ConfigError: a bad ``imgsz``, ``conf``, ``iou``, ``max_det`` or ``threads`` value,
            an ``imgsz`` a static ONNX/OpenVINO graph cannot run at, or a device the
            runtime cannot use.
        ModelError: a missing or unknown artifact, or one the runtime cannot load.

    Example:
        >>> pred = Predictor("runs/nano/best.pt", conf=0.25)
        >>> dets = pred.predict("photo.jpg")[0]
        >>> boxes, scores = dets.boxes, dets.scores  # (N, 4) xyxy pixels, (N,)
    """

    def __init__(
        self,
        artifact: str | Path,
        *,
        imgsz: int | None = None,
        conf: float = 0.25,
        iou: float = 0.65,
        max_det: int = 300,
        threads: int | None = None,
        ov_precision: str | None = None,
        device: str = "cpu",
    ) -> None:
        check_nms_settings(conf=conf, iou=iou, max_det=max_det)
        check_count("threads", threads, allow_none=True)
        check_imgsz(imgsz)
        if not isinstance(device, str):
            raise ConfigError(f"device={device!r} must be a string such as 'cpu' or 'cuda:0'")
        self.backend = load_backend(artifact, threads=threads, hint=ov_precision, device=device)
        # the settings it runs with, which a function taking its file cannot carry over
        self.settings = {"threads": threads, "ov_precision": ov_precision, "device": device}
        refuse_end_to_end(self.backend, "predict")
        check_static_imgsz(self.backend, imgsz)
        self.imgsz = imgsz or self.backend.imgsz
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.names = list(self.backend.names)

    @property
    def model(self) -> torch.nn.Module:
        """The torch model behind a ``.pt`` artifact (for compression stages)."""
        if self.backend.kind != "torch":
            raise ModelError(
                f"{self.backend.path} is a {self.backend.kind} artifact, not a torch checkpoint"
            )
        return self.backend.model

    def preprocess(self, images: list[np.ndarray], out: np.ndarray | None = None):
        """Letterbox into ``out`` (float32 ``(B, 3, S, S)`` in [0, 1], allocated when None)."""
        return self._batch([self._letterbox(arr) for arr in images], out)

    def _letterbox(self, arr: np.ndarray) -> tuple[np.ndarray, tuple]:
        """One image letterboxed (uint8 ``SxSx3``) and its meta ``(ratio, pad, (h, w))``."""
        boxed, ratio, pad = letterbox(Image.fromarray(arr), self.imgsz)
        return boxed, (ratio, pad, arr.shape[:2])

    def _batch(self, boxed: list[tuple[np.ndarray, tuple]], out: np.ndarray | None = None):
        s = self.imgsz
        if out is None:
            out = np.empty((len(boxed), 3, s, s), np.float32)
        for i, (b, _) in enumerate(boxed):
            np.multiply(b.transpose(2, 0, 1), 1 / 255, out=out[i], casting="unsafe")
        return out[: len(boxed)], [meta for _, meta in boxed]

    def __repr__(self) -> str:
        return (
            f"Predictor({self.backend.path}, {self.backend.kind}, imgsz={self.imgsz}, "
            f"conf={self.conf}, iou={self.iou})"
        )

    def infer(self, batch: np.ndarray) -> torch.Tensor:
        return self.backend(
            torch.from_numpy(batch) if self.backend.kind in ("torch", "torchscript") else batch
        )

    def postprocess(self, preds: torch.Tensor, metas, sources) -> list[Detections]:
        results, preds = [], preds.float()
        if not len(preds):  # no image: no detections (torch.stack of none fails)
            return results
        # NMS runs on the boxes in the image's pixels, clipped to it: two boxes past its edge
        # that clip to one were both kept (audit49 cli F1). A box wholly in the letterbox's
        # padding is clipped to no width or height: no detection, dropped before NMS so that
        # it neither suppresses a box nor takes a place among max_det (audit48 predict F1)
        boxes = torch.stack(
            [
                scale_boxes(p[:, :4], ratio, pad, shape)
                for p, (ratio, pad, shape) in zip(preds, metas, strict=True)
            ]
        )
        dets = postprocess_in_image(
            preds, boxes, conf=self.conf, iou=self.iou, max_det=self.max_det
        )
        for det, (_, _, shape), src in zip(dets, metas, sources, strict=True):
            results.append(
                Detections(
                    det[:, :4].numpy(),
                    det[:, 4].numpy(),
                    det[:, 5].numpy().astype(np.int64),
                    self.names,
                    tuple(shape),
                    src,
                )
            )
        return results

    def predict(
        self, source: ImageLike | Iterable[ImageLike], *, batch: int = 8
    ) -> list[Detections]:
        """Detections for each image of ``source``.

        Args:
            source: One image or any iterable of them (list, tuple, generator). An image is
                a file path, a folder (its images, sorted), a PIL image, or a numpy array /
                torch tensor of RGB pixels: ``HxWx3`` (a tensor may be ``3xHxW``), uint8, or
                float in [0, 1] (scaled by 255) or in [0, 255]; see
                :data:`~yoloslim.runtime.images.ImageLike`.
            batch: Images per runtime call, >= 1.

        Images in a folder that cannot be decoded are skipped with a warning (see
        :func:`~yoloslim.runtime.images.iter_images`); ``Detections.source`` names the file.

        Raises:
            ConfigError: a bad ``batch``.
            DataError: an image that cannot be read: a missing file, an array or tensor of
                the wrong shape, dtype or value range, an empty image, or an unknown type.
        """
        return [det for _, det in self.stream(source, batch=batch, images=False)]

    def stream(
        self,
        source: ImageLike | Iterable[ImageLike],
        *,
        batch: int = 8,
        skip_unreadable: bool = False,
        images: bool = True,
    ) -> Iterator[tuple[np.ndarray | None, Detections]]:
        """Yield ``(RGB image, Detections)`` per image, a ``batch`` of images at a time
        (``images=False``: ``None`` for the image, whose full-size pixels are then not kept
        while a batch gathers; 20 photos of 24 MP held 1.1 GB at batch 8, 0.6 GB at 1).

        ``source`` is what :meth:`predict` takes. A folder or a list of paths is decoded by
        a background thread while the runtime runs, at most about two batches ahead (the
        batch being gathered, one more queued); any other source (a caller's iterator,
        arrays, PIL images) is read in the calling thread, one batch at a time.

        Raises:
            ConfigError: a bad ``batch`` (raised at the call, before anything is read).
            DataError: as in :meth:`predict`, when the bad image is reached.

        Example:
            >>> for image, det in Predictor("best.pt").stream("photos/"):  # doctest: +SKIP
            ...     print(det.source, len(det))
        """
        check_count("batch", batch)
        return self._stream(source, batch, skip_unreadable, images=images)

    def _stream(
        self, source, batch: int, skip_unreadable: bool, *, images: bool = True
    ) -> Iterator[tuple[np.ndarray | None, Detections]]:
        def prepared():  # decoded and letterboxed, one image at a time
            for arr, src in iter_images(source, skip_unreadable=skip_unreadable):
                boxed = self._letterbox(arr)
                if not images:
                    arr = None  # only the letterboxed copy waits for the batch
                elif src is None and batch > 1:
                    # a caller's array, kept while the batch fills: a copy, so that a reader
                    # that reuses one buffer (video) does not change it under us
                    arr = arr.copy()
                yield arr, src, boxed

        items = prepared()
        if _files_only(source):
            # files yoloslim opens itself are decoded and letterboxed by a background thread
            # while the runtime runs (PIL lets go of the GIL), a batch ahead at most; a
            # caller's own iterator or arrays are never read from another thread or ahead
            items = prefetched(items, ahead=batch)
        chunk: list = []
        for item in items:
            chunk.append(item)
            if len(chunk) == batch:
                yield from self._run(chunk)
                chunk = []
        if chunk:
            yield from self._run(chunk)

    def _run(self, chunk: list):
        images = [a for a, _, _ in chunk]
        x, metas = self._batch([b for _, _, b in chunk])
        dets = self.postprocess(self.infer(x), metas, [s for _, s, _ in chunk])
        return zip(images, dets, strict=True)

    __call__ = predict


def _files_only(source: object) -> bool:
    """Whether ``source`` is a folder, or a list or tuple of paths (what may be read ahead)."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).is_dir()
    return isinstance(source, (list, tuple)) and all(
        isinstance(s, (str, os.PathLike)) for s in source
    )


def prefetched(items: Iterator, ahead: int) -> Iterator:
    """``items``, produced by a background thread that stays at most ``ahead`` items in
    front of the consumer; an exception it meets is raised here, at its place in the
    sequence. Closing or abandoning the returned generator stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, e))
            return
        put((True, done))

    thread = threading.Thread(target=produce, name="yoloslim-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()


def _check_one_image(image) -> None:
    """:class:`ConfigError` unless ``image`` is one image (not a folder or a collection)."""
    if not is_single_image(image) and isinstance(image, Iterable):
        n = f" of {len(image)}" if isinstance(image, Sized) else ""
        raise ConfigError(
            f"submit takes one image (got a {type(image).__name__}{n}); call it once per image"
        )
    if isinstance(image, (str, os.PathLike)) and Path(image).is_dir():
        raise ConfigError(f"submit takes one image (got a folder, {image}); call it once per image")


class BatchingPredictor:
    """Thread-safe dynamic batching over a :class:`Predictor`.

    Callers (any thread) call :meth:`submit` or :meth:`predict_one`; a worker thread
    collects up to ``max_batch`` requests, waiting at most ``max_wait_ms`` after the
    first, runs them in one call through a preallocated input buffer, and resolves
    each caller's future with its own detections.

    Args:
        predictor: The :class:`Predictor` to run.
        max_batch: Most images per runtime call, >= 1.
        max_wait_ms: How long to wait for more requests after the first, >= 0.

    Raises:
        ConfigError: a bad ``max_batch`` or ``max_wait_ms``.
    """

    def __init__(
        self, predictor: Predictor, *, max_batch: int = 8, max_wait_ms: float = 5.0
    ) -> None:
        check_count("max_batch", max_batch)
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, numbers.Real):
            raise ConfigError(f"max_wait_ms={max_wait_ms!r} must be a number >= 0")
        if not max_wait_ms >= 0:
            raise ConfigError(f"max_wait_ms={max_wait_ms!r} must be >= 0")
        if not isinstance(predictor, Predictor):
            raise ConfigError(
                f"predictor={brief(predictor)}: expected a Predictor (ys.load(path) makes one), got "
                f"{type(predictor).__name__}"
            )
        self.predictor = predictor
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        s = predictor.imgsz
        self.buffer = np.zeros((max_batch, 3, s, s), np.float32)  # reused by every batch
        self.batches_run = 0
        # the sizes of the last 1000 batches: a server runs for days (a list grew without end)
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=1000)
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        # held while a request is queued and while close() queues its sentinel, so that no
        # request lands behind the sentinel where the worker would never see it
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="yoloslim-batcher", daemon=True)
        self._thread.start()

    def submit(self, image: ImageLike) -> Future:
        """Queue one image; the future resolves to its :class:`Detections`.

        Args:
            image: One image file, PIL image, array or tensor, as :meth:`Predictor.predict`
                takes (not a folder or a collection: call ``submit`` once per image).

        Raises:
            ConfigError: ``image`` is a folder, a list or another collection of images.
            DataError: the image cannot be read.
            RuntimeError: the predictor is closed.
        """
        if self._closing:
            raise RuntimeError("BatchingPredictor is closed")
        _check_one_image(image)
        arr, src = next(iter_images(image))
        fut: Future = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("BatchingPredictor is closed")
            self._queue.put((arr, src, fut))
        return fut

    def predict_one(self, image: ImageLike, timeout: float | None = 60) -> Detections:
        """:meth:`submit` ``image`` and wait (at most ``timeout`` s) for its detections; on a
        timeout the request is cancelled (it no longer runs if it has not started)."""
        fut = self.submit(image)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def _collect(self) -> list:
        first = self._queue.get()
        if first is None:
            return []
        reqs = [first]
        deadline = time.perf_counter() + self.max_wait
        while len(reqs) < self.max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if item is None:
                self._stop.set()
                break
            reqs.append(item)
        return reqs

    def _loop(self) -> None:
        while not self._stop.is_set():
            reqs = self._collect()
            if not reqs:
                break
            # a future its caller cancelled (a client's timeout) is dropped; the others can
            # no longer be cancelled, so resolving them below cannot fail
            reqs = [r for r in reqs if r[2].set_running_or_notify_cancel()]
            if not reqs:
                continue
            try:
                x, metas = self.predictor.preprocess([r[0] for r in reqs], out=self.buffer)
                dets = self.predictor.postprocess(
                    self.predictor.infer(x), metas, [r[1] for r in reqs]
                )
                self.batches_run += 1
                self.batch_sizes.append(len(reqs))
                for (_, _, fut), d in zip(reqs, dets, strict=True):
                    fut.set_result(d)
            except Exception as e:  # noqa: BLE001 - hand the failure to every waiting caller
                for _, _, fut in reqs:
                    if not fut.done():
                        fut.set_exception(e)

    def close(self, timeout: float | None = 30) -> None:
        """Refuse new requests, finish the queued ones and stop the worker thread.

        Args:
            timeout: seconds to wait for the queued work (None: as long as it takes);
                requests still queued then fail with RuntimeError.
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._queue.put(None)
        self._thread.join(timeout)
        self._stop.set()
        while True:  # only when the wait timed out: what the worker never reached
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[2].set_running_or_notify_cancel():
                item[2].set_exception(RuntimeError("BatchingPredictor closed before it ran"))
        self._queue.put(None)  # a worker between its stop check and get() still wakes and ends

    def __enter__(self) -> BatchingPredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# what train and prune take, as their type errors word it (audit51 api F3: "an artifact path")
BUILDABLE = "a registered name, an arch .yaml or dict, a .pt checkpoint, a Detector or a Predictor"


def as_artifact(
    model,
    name: str = "model",
    *,
    required: bool = False,
    expected: str = "a checkpoint or artifact path, a model or a Predictor",
):
    """``model`` as the functions that take a model or a file want it: a :class:`Predictor`
    stands for the artifact it runs (``.pt``, ``.torchscript``, ``.onnx``, ``.xml``), so
    ``ys.prune(ys.load("best.pt"), ...)`` prunes ``best.pt``; a path, a module, an arch dict
    or None is returned as it is, and anything else is a ConfigError naming ``name``. A
    Predictor whose file changed since it was loaded is a ModelError (the function would read
    other weights than the Predictor runs). ``required``: None is a ConfigError too (a function
    that has no run of its own to resume). ``expected``: what the function takes, as the error
    words it."""
    if isinstance(model, Predictor):
        return model.backend.loaded_path()
    if (model is None and not required) or isinstance(
        model, (str, os.PathLike, torch.nn.Module, dict)
    ):
        return model
    raise ConfigError(f"{name}={brief(model)}: expected {expected}, got {type(model).__name__}")
