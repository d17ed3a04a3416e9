"""Predictor: letterbox -> any runtime -> NMS -> boxes in each original image's pixels.

``Predictor`` runs one call at a time; ``BatchingPredictor`` groups concurrent
requests (up to ``max_batch`` images or ``max_wait_ms``) into one runtime call,
reusing a preallocated input buffer, and hands each caller its own detections.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from yoloslim.configs import check_imgsz
from yoloslim.data.transforms import letterbox
from yoloslim.errors import ModelError
from yoloslim.eval.postprocess import postprocess, scale_boxes
from yoloslim.runtime.backends import load_backend
from yoloslim.runtime.images import IMAGE_SUFFIXES, ImageLike, iter_images

__all__ = [
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

    def __len__(self) -> int:
        return len(self.scores)

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


class Predictor:
    """Run a detector artifact (.pt, .torchscript, .onnx, .xml) on images.

    Example:
        >>> pred = Predictor("runs/nano/best.pt", conf=0.25)
        >>> dets = pred.predict("photo.jpg")[0]
        >>> dets.boxes, dets.scores, dets.classes
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
    ) -> None:
        if not 0 <= conf <= 1:
            raise ModelError(f"conf={conf} must be in [0, 1]")
        if not 0 < iou <= 1:
            raise ModelError(f"iou={iou} must be in (0, 1]")
        check_imgsz(imgsz)
        self.backend = load_backend(artifact, threads=threads)
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
        s = self.imgsz
        if out is None:
            out = np.empty((len(images), 3, s, s), np.float32)
        metas = []
        for i, arr in enumerate(images):
            boxed, ratio, pad = letterbox(Image.fromarray(arr), s)
            np.multiply(boxed.transpose(2, 0, 1), 1 / 255, out=out[i], casting="unsafe")
            metas.append((ratio, pad, arr.shape[:2]))
        return out[: len(images)], metas

    def infer(self, batch: np.ndarray) -> torch.Tensor:
        return self.backend(
            torch.from_numpy(batch) if self.backend.kind in ("torch", "torchscript") else batch
        )

    def postprocess(self, preds: torch.Tensor, metas, sources) -> list[Detections]:
        results = []
        dets = postprocess(preds.float(), conf=self.conf, iou=self.iou, max_det=self.max_det)
        for det, (ratio, pad, shape), src in zip(dets, metas, sources, strict=True):
            boxes = scale_boxes(det[:, :4], ratio, pad, shape)
            results.append(
                Detections(
                    boxes.numpy(),
                    det[:, 4].numpy(),
                    det[:, 5].numpy().astype(np.int64),
                    self.names,
                    tuple(shape),
                    src,
                )
            )
        return results

    def predict(
        self, source: ImageLike | Sequence[ImageLike], *, batch: int = 8
    ) -> list[Detections]:
        """Detections for each image of ``source`` (paths, folders, arrays, PIL images).

        Images in a folder that cannot be decoded are skipped with a warning (see
        :func:`~yoloslim.runtime.images.iter_images`); ``Detections.source`` names the file.
        """
        return [det for _, det in self.stream(source, batch=batch)]

    def stream(
        self,
        source: ImageLike | Sequence[ImageLike],
        *,
        batch: int = 8,
        skip_unreadable: bool = False,
    ) -> Iterator[tuple[np.ndarray, Detections]]:
        """Yield ``(RGB image, Detections)`` per image, decoding at most ``batch`` at a time.

        Example:
            >>> for image, det in Predictor("best.pt").stream("photos/"):  # doctest: +SKIP
            ...     print(det.source, len(det))
        """
        if batch < 1:
            raise ModelError(f"batch={batch} must be >= 1")
        chunk: list[tuple[np.ndarray, str | None]] = []
        for item in iter_images(source, skip_unreadable=skip_unreadable):
            chunk.append(item)
            if len(chunk) == batch:
                yield from self._run(chunk)
                chunk = []
        if chunk:
            yield from self._run(chunk)

    def _run(self, chunk: list[tuple[np.ndarray, str | None]]):
        images = [a for a, _ in chunk]
        x, metas = self.preprocess(images)
        dets = self.postprocess(self.infer(x), metas, [s for _, s in chunk])
        return zip(images, dets, strict=True)

    __call__ = predict


class BatchingPredictor:
    """Thread-safe dynamic batching over a :class:`Predictor`.

    Callers (any thread) call :meth:`submit` or :meth:`predict_one`; a worker thread
    collects up to ``max_batch`` requests, waiting at most ``max_wait_ms`` after the
    first, runs them in one call through a preallocated input buffer, and resolves
    each caller's future with its own detections.
    """

    def __init__(
        self, predictor: Predictor, *, max_batch: int = 8, max_wait_ms: float = 5.0
    ) -> None:
        if max_batch < 1:
            raise ModelError(f"max_batch={max_batch} must be >= 1")
        self.predictor = predictor
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        s = predictor.imgsz
        self.buffer = np.zeros((max_batch, 3, s, s), np.float32)  # reused by every batch
        self.batches_run = 0
        self.batch_sizes: list[int] = []
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="yoloslim-batcher", daemon=True)
        self._thread.start()

    def submit(self, image: ImageLike) -> Future:
        """Queue one image; the future resolves to its :class:`Detections`."""
        if self._stop.is_set():
            raise RuntimeError("BatchingPredictor is closed")
        fut: Future = Future()
        arr, src = next(iter_images(image))
        self._queue.put((arr, src, fut))
        return fut

    def predict_one(self, image: ImageLike, timeout: float | None = 60) -> Detections:
        return self.submit(image).result(timeout)

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
                    fut.set_exception(e)

    def close(self) -> None:
        """Finish queued work and stop the worker thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._stop.set()

    def __enter__(self) -> BatchingPredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
