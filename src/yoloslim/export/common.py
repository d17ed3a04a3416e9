"""What every exporter receives, and the metadata every artifact carries."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "ExportContext",
    "artifact_metadata",
    "made_by_yoloslim",
    "onnx_metadata",
    "openvino_metadata",
    "path_size_mb",
]


@dataclass
class ExportContext:
    """A deploy-form (re-parameterised, eval) model plus the export options.

    Attributes:
        model: the fused model every format is converted from.
        names: class names, stored in every artifact's metadata.
        imgsz: square input size.
        out: output folder.
        stem: file name stem of the artifacts.
        triton_name: the Triton model's name (its folder in the repository).
        triton_max_batch: the Triton config's ``max_batch_size``.
        dynamic: dynamic batch axis where the format allows it.
        half: FP16 weights (OpenVINO, CoreML, TensorRT; ONNX stays FP32).
        strides: the detector's output strides (metadata; Triton's anchor count).
        scratch: intermediate files shared between exporters within one ``export()``
            call (e.g. the ONNX that OpenVINO, Triton and TensorRT convert from),
            keyed by role; they live in a private temporary folder (:meth:`scratch_path`),
            never in ``out``, and are removed when the call ends.
        check: set by :func:`yoloslim.export.export` while one format is written (None
            with ``verify=False``): the exporter passes it to :func:`yoloslim.fileio.staged`,
            which runs it on the artifact while it is still staged, so one that fails its
            verification never replaces the file under the artifact's name.
    """

    model: nn.Module
    names: list[str]
    imgsz: int
    out: Path
    stem: str = "model"
    triton_name: str = "model"
    triton_max_batch: int = 16
    dynamic: bool = False
    half: bool = False
    strides: tuple[int, ...] = (8, 16, 32)
    scratch: dict[str, Path] = field(default_factory=dict)
    check: Callable[[Path], object] | None = None
    _scratch_dir: Path | None = field(default=None, init=False, repr=False)

    @property
    def weights(self) -> str:
        """What the formats that take ``half`` store their weights in: ``fp16`` or ``fp32``."""
        return "fp16" if self.half else "fp32"

    def example(self, batch: int = 1) -> torch.Tensor:
        """A seeded random input in [0, 1], ``(batch, 3, imgsz, imgsz)``."""
        g = torch.Generator().manual_seed(0)
        return torch.rand(batch, 3, self.imgsz, self.imgsz, generator=g)

    def scratch_path(self, name: str) -> Path:
        """``name`` in this context's private temporary folder (made on first use): two
        exports into one folder never share, or delete, each other's intermediate files."""
        if self._scratch_dir is None:
            _remove_old_scratch()
            self._scratch_dir = Path(tempfile.mkdtemp(prefix=_SCRATCH_PREFIX))
        return self._scratch_dir / name

    def cleanup(self) -> None:
        """Remove the scratch files and their folder."""
        self.scratch.clear()
        if self._scratch_dir is not None:
            shutil.rmtree(self._scratch_dir, ignore_errors=True)
            self._scratch_dir = None


_SCRATCH_PREFIX = "yoloslim-export-"
_SCRATCH_MAX_AGE_S = 24 * 3600  # no export runs this long: an older folder is a killed one's


def _remove_old_scratch() -> None:
    """Delete scratch folders that killed exports (SIGKILL skips ``cleanup``) left in the
    temp folder, once they are a day old."""
    now, uid = time.time(), getattr(os, "getuid", lambda: None)()
    for p in Path(tempfile.gettempdir()).glob(f"{_SCRATCH_PREFIX}*"):
        try:
            st = p.stat()
        except OSError:
            continue
        mine = uid is None or st.st_uid == uid
        if mine and p.is_dir() and now - st.st_mtime > _SCRATCH_MAX_AGE_S:
            shutil.rmtree(p, ignore_errors=True)


INPUT_TEXT = (
    "images: (B, 3, S, S) float32, RGB, pixels / 255 (no mean or std), letterboxed: "
    "scaled by r = min(S / width, S / height) to max(1, floor(width * r + 0.001)) x "
    "max(1, floor(height * r + 0.001)) (PIL bilinear of the source box that maps to exactly "
    "that size), centred on an S x S canvas of grey 114 (see 'preprocess')"
)
OUTPUT_TEXT = (
    "preds: (B, A, 4 + nc), per anchor x1, y1, x2, y2 in the letterboxed input's pixels "
    "(already decoded: no anchors or strides to apply), then nc class scores in [0, 1] "
    "(sigmoid applied, no objectness); original pixels: x = (x - left) / r, y = (y - top) / r"
)


def preprocess_spec() -> dict:
    """How an image becomes the model's input, as ``yoloslim predict`` does it: stored in
    every artifact (``preprocess``) so that a deployment without yoloslim can do the same."""
    from yoloslim.data.transforms import PAD_VALUE

    return {
        "color": "RGB",
        "layout": "NCHW",
        "dtype": "float32",
        "scale": "1/255",
        "mean": None,
        "std": None,
        "letterbox": {
            "ratio": "r = min(S / width, S / height)",
            "size": "max(1, floor(width * r + 0.001)), max(1, floor(height * r + 0.001))",
            "resample": "PIL Image.resize(size, BILINEAR, box=(0, 0, min(new_width / r, width), "
            "min(new_height / r, height))): both axes scaled by exactly r",
            "left": "(S - new_width) // 2",
            "top": "(S - new_height) // 2",
            "pad_value": PAD_VALUE,
        },
        "to_original_pixels": "x = (x - left) / r, y = (y - top) / r",
    }


def artifact_metadata(ctx: ExportContext) -> dict[str, str]:
    """String key/values stored inside every artifact (ONNX metadata_props, OpenVINO rt_info, ...)."""
    from yoloslim import __version__

    meta = {
        "yoloslim_version": __version__,
        "names": json.dumps(list(ctx.names)),
        "nc": str(len(ctx.names)),
        "imgsz": str(ctx.imgsz),
        "strides": json.dumps(list(ctx.strides)),
        "input": INPUT_TEXT,
        "preprocess": json.dumps(preprocess_spec()),
        "output": OUTPUT_TEXT,
    }
    history = getattr(ctx.model, "history", None)  # the checkpoint's meta.history
    if history:
        meta["history"] = json.dumps(history)
    return meta


def onnx_metadata(model) -> dict[str, str]:
    """The metadata_props of an ONNX model (a ModelProto, or a path read without its weights)."""
    if not hasattr(model, "metadata_props"):
        import onnx

        model = onnx.load(str(model), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def made_by_yoloslim(path: str | Path) -> bool:
    """Whether the artifact ``path`` carries the metadata yoloslim's exports store in it
    (``yoloslim_version``: ONNX metadata_props, the OpenVINO .xml's rt_info, TorchScript's
    ``config.json``, a CoreML package's spec, a TensorRT engine's ``.engine.json``); the IR's
    .bin and a package's weight file are not read, an ONNX file is (by :func:`onnx_metadata`,
    without external data). False for anything unreadable, and for a kind it does not know."""
    p = Path(path)
    key = b"yoloslim_version"
    try:
        suffix = p.suffix.lower()
        if suffix == ".onnx":
            return key.decode() in onnx_metadata(p)
        if suffix == ".xml":  # the IR's graph and rt_info; its weights are in the .bin
            return key in p.read_bytes()
        if suffix == ".torchscript":
            import zipfile

            with zipfile.ZipFile(p) as z:
                extra = [n for n in z.namelist() if n.endswith("/extra/config.json")]
                return any(key in z.read(n) for n in extra)
        if suffix == ".mlpackage":  # the spec holds the metadata, the weights are apart
            return any(key in m.read_bytes() for m in p.rglob("*.mlmodel"))
        if suffix == ".engine":
            meta = json.loads(p.with_name(p.name + ".json").read_text())
            return isinstance(meta, dict) and key.decode() in meta
    except Exception:  # noqa: BLE001 - a file that is not what its name says: not ours
        return False
    return False


def openvino_metadata(model) -> dict[str, str]:
    """The ``yoloslim`` rt_info of an OpenVINO model (what :func:`artifact_metadata` stored);
    for an IR that OpenVINO converted from a yoloslim ONNX itself (``ovc model.onnx``,
    ``openvino.convert_model``), the ONNX's metadata, which it keeps under ``framework``."""
    for section in ("yoloslim", "framework"):
        if model.has_rt_info([section]):
            keys = model.get_rt_info([section]).astype(dict)
            if section == "yoloslim" or "yoloslim_version" in keys:
                return {k: model.get_rt_info([section, k]).astype(str) for k in keys}
    return {}


def path_size_mb(path: Path, ndigits: int | None = 3) -> float:
    """Size of an artifact in MiB (2^20 bytes): a file, an OpenVINO .xml with its .bin, a
    folder (an .mlpackage), or a Triton model's ``config.pbtxt`` with the version folder
    ``1/`` yoloslim writes beside it (not the model's other files or versions); rounded to
    ``ndigits`` (None: not rounded)."""
    path = Path(path)
    if path.name == "config.pbtxt" and (path.parent / "1").is_dir():
        files = [path, *(p for p in (path.parent / "1").rglob("*") if p.is_file())]
        total = sum(p.stat().st_size for p in files)
    elif path.is_dir():
        total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    elif path.suffix.lower() == ".xml":  # MODEL.XML runs too (with MODEL.bin)
        weights = [b for b in (path.with_suffix(".bin"), path.with_suffix(".BIN")) if b.is_file()]
        total = path.stat().st_size + (weights[0].stat().st_size if weights else 0)
    elif path.suffix.lower() == ".onnx":  # with its external data files, if it has any
        total = sum(p.stat().st_size for p in {path, *_onnx_external_files(path)})
    else:
        total = path.stat().st_size
    return total / 2**20 if ndigits is None else round(total / 2**20, ndigits)


def _onnx_external_files(path: Path) -> list[Path]:
    """The files an ONNX keeps its weights in beside it (external data: a model over 2 GB,
    or another tool's export), that exist; [] for one that holds its weights itself."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - not readable as ONNX: the file alone, as any other
        return []
    found = set()
    for t in graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            where = {e.key: e.value for e in t.external_data}.get("location")
            if where and (path.parent / where).is_file():
                found.add(path.parent / where)
    return sorted(found)
