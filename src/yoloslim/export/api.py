"""``export()``: re-parameterise, write each requested format, verify each artifact."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from yoloslim.configs import DEFAULT_IMGSZ, check_flags, check_imgsz, check_path
from yoloslim.errors import ConfigError, ExportError, ModelError, YoloslimError, stop_requested
from yoloslim.export.common import ExportContext, made_by_yoloslim, path_size_mb
from yoloslim.export.nms import check_graph_nms
from yoloslim.export.registry import EXPORTERS, half_problem
from yoloslim.export.triton import (
    VERSION,
    triton_max_batch_problem,
    triton_model_problem,
    triton_name_problem,
)
from yoloslim.fileio import (
    atomic_write_text,
    file_key,
    first_missing,
    folder_lock,
    folder_problem,
    remove_stale_staging,
    remove_stale_temps,
    removed_if_left_empty,
)
from yoloslim.progress import say
from yoloslim.result import Result
from yoloslim.torch_state import keeps_caller_state

#: export()'s NMS graph thresholds when not given (one set without ``nms`` is refused)
NMS_DEFAULTS = {"nms_conf": 0.25, "nms_iou": 0.65, "nms_max_det": 300}

__all__ = ["check_options", "export"]

log = logging.getLogger(__name__)


def check_options(
    formats: Sequence[str] | str,
    *,
    imgsz: int | None,
    dynamic: bool,
    half: bool,
    nms: bool,
    nms_conf: float,
    nms_iou: float,
    nms_max_det: int,
    triton_name: str,
    triton_max_batch: int,
    verify: bool = True,
    recipe: bool = False,
) -> list[str]:
    """The formats, as a list without repeats, once the options of :func:`export` are
    known to go together; :class:`ConfigError` naming the first that does not, as the
    Python call and its command-line flag spell it (``half=True (--half)``) or, with
    ``recipe``, as a recipe's export stage does (``half: true``).

    ``formats`` may be one comma-separated string (``"onnx,openvino"``), as on the command
    line.
    """

    def opt(name: str, value: bool) -> str:
        # the Python spelling and the flag (``nms=True (--nms)``), or the recipe's
        if recipe:
            return f"{name}: {str(value).lower()}"
        return f"{name}={value!r}" + (f" (--{name})" if value is True else "")

    for name, value in (("dynamic", dynamic), ("half", half), ("nms", nms), ("verify", verify)):
        if not isinstance(value, bool):  # "no" is truthy: it exported a dynamic batch
            said = f"{name}: {value!r}" if recipe else f"{name}={value!r}"
            raise ConfigError(f"{said} must be {'true or false' if recipe else 'True or False'}")

    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    if not isinstance(formats, (list, tuple)) or not all(isinstance(f, str) for f in formats):
        raise ConfigError(
            f"formats={formats!r}: give format names, as a list or comma-separated; choose "
            f"from {sorted(EXPORTERS)}"
        )
    formats = list(dict.fromkeys(f.strip().lower() for f in formats))  # "ONNX" is onnx
    unknown = [f for f in formats if f not in EXPORTERS]
    if unknown or not formats:
        what = f"unknown export format(s) {unknown}" if unknown else "no format given"
        flag = "" if recipe else " (--format)"
        raise ConfigError(f"formats={formats}{flag}: {what}; choose from {sorted(EXPORTERS)}")
    if nms and "onnx" not in formats:
        raise ConfigError(f"{opt('nms', True)} needs the onnx format: add onnx to the formats")
    if nms and dynamic:
        raise ConfigError(
            f"{opt('nms', True)} needs a static batch (the graph's NMS runs on one image): "
            f"drop {opt('dynamic', True)}"
        )
    unheeded = half_problem(formats, half)
    if unheeded:
        raise ConfigError(f"{opt('half', True)}: {unheeded}")
    check_graph_nms(nms_conf=nms_conf, nms_iou=nms_iou, nms_max_det=nms_max_det)
    given = {"nms_conf": nms_conf, "nms_iou": nms_iou, "nms_max_det": nms_max_det}
    changed = [k for k, v in given.items() if v != NMS_DEFAULTS[k]]
    if changed and not nms:  # ignored without a word (the command line refused it)
        flags = "" if recipe else f" ({', '.join('--' + k.replace('_', '-') for k in changed)})"
        raise ConfigError(
            f"{', '.join(changed)}{flags} set the thresholds of the NMS graph, and "
            f"{opt('nms', False)}: add {opt('nms', True)}"
        )
    check_imgsz(imgsz)
    for name, value, problem in (
        ("triton_name", triton_name, triton_name_problem),
        ("triton_max_batch", triton_max_batch, triton_max_batch_problem),
    ):
        bad = problem(value)
        if bad:
            flag = "" if recipe else f" (--{name.replace('_', '-')})"
            raise ConfigError(f"{name}{flag}: {bad}")
    return formats


@keeps_caller_state
def export(
    model: str | Path | nn.Module,
    out: str | Path,
    *,
    formats: Sequence[str] | str = ("onnx",),
    imgsz: int | None = None,
    dynamic: bool = False,
    half: bool = False,
    nms: bool = False,
    verify: bool = True,
    triton_name: str = "model",
    triton_max_batch: int = 16,
    nms_conf: float = 0.25,  # NMS_DEFAULTS
    nms_iou: float = 0.65,
    nms_max_det: int = 300,
    progress: bool = False,
) -> Result:
    """Export a checkpoint or Detector to ``formats`` under ``out`` and verify each artifact.

    The model is re-parameterised first (:func:`yoloslim.compress.reparameterize`, which
    checks the fused model against the trained one); every artifact gives the same decoded
    output ``(B, A, 4 + nc)`` as that PyTorch model, checked in its own runtime with the
    tolerances of :mod:`yoloslim.export.verify`.

    Args:
        model: a yoloslim checkpoint path or a Detector (never modified).
        out: output folder (created); ``out/export_report.json`` is written. Entries of an
            earlier report there are kept for the formats this call does not write again,
            when their artifacts still exist, each with ``exported_with: {imgsz, dynamic,
            half, model, model_digest}``. Intermediate files go to a private temporary folder, not ``out``.
        formats: names in :data:`yoloslim.export.EXPORTERS` (a list, or one string such as
            ``"onnx,openvino"``): ``onnx``, ``openvino``,
            ``torchscript``, ``coreml``, ``engine`` (TensorRT), ``triton``.
        imgsz: square input size, a multiple of 32 (default: the checkpoint's or a loaded
            Detector's, else 320).
        dynamic: dynamic batch axis (ONNX, OpenVINO, TensorRT; Triton's is always dynamic).
        half: FP16 weights (OpenVINO, CoreML, TensorRT); ONNX and TorchScript stay FP32.
        nms: also write ``{stem}_e2e.onnx`` with NonMaxSuppression in the graph (needs the
            ``onnx`` format and a static batch), outputs ``(num_dets, boxes, scores, classes)``
            (boxes in the letterboxed input's pixels), the detections ``yoloslim predict``
            gives (each anchor's top class, class-aware NMS); checked in ONNX Runtime and
            OpenVINO against the torch postprocess, at the graph's conf and at a lower one
            that lets detections through on the probe images (see
            :func:`yoloslim.export.nms.verify_nms`).
        verify: run each artifact and compare with PyTorch, while it is still staged:
            one that fails its check is discarded and never takes the artifact's name (an
            earlier export's file there stays, and stays in the report as ``earlier``). A
            mismatch raises, once the other formats are written and checked (each is in
            the report, a failed one with ``passed: False`` and its ``error``; the
            ExportError's ``report`` is that report). False: written unchecked.
        triton_name: the Triton model's name: the repository holds it in
            ``out/triton/{triton_name}/`` beside any other models already there.
        triton_max_batch: the Triton config's ``max_batch_size``, 1 to 256 (the largest
            batch the server forms from requests).
        nms_conf, nms_iou, nms_max_det: the end-to-end graph's score threshold (a
            detection scores above it), NMS IoU threshold and most detections kept
            (with ``nms``; stored in its metadata as ``nms_conf``, ``nms_iou``,
            ``nms_max_det``).
        progress: a line on stderr as each format starts and one with its outcome (a
            conversion and its check can take minutes; the lines show in a log too).

    Returns:
        Result: ``model`` is the re-parameterised torch model, ``artifacts`` maps format ->
        path, ``report`` is what ``export_report.json`` holds (per format: ``path``,
        ``size_mb``, ``runtime``, ``runtime_version``, ``precision``, ``max_abs_diff``,
        ``tolerance``, ``passed``; OpenVINO, checked at the f32 hint, adds
        ``inference_precision_hint`` and ``default_precision``).

    Raises:
        ConfigError: unknown format or inconsistent options, or a file under an
            artifact's name (or ``export_report.json``) that yoloslim did not write, a
            Triton ``config.pbtxt`` edited since, or a Triton model folder with another
            version than ``1/`` (all before any work).
        ModelError: the checkpoint cannot be read, or ``model`` is a module but no Detector.
        ExportError: a missing runtime or extra, an unwritable folder, a failed
            conversion, or an artifact that disagrees with PyTorch.

    Example:
        >>> res = export("runs/nano/best.pt", "out/", formats=["onnx", "openvino"])
        >>> res.report["formats"]["onnx"]["passed"]
        True
    """
    from yoloslim.compress.reparam import reparameterize
    from yoloslim.export.verify import probe_images
    from yoloslim.models.checkpoint import load_checkpoint, weights_digest
    from yoloslim.models.detector import Detector, default_names
    from yoloslim.runtime.predictor import as_artifact

    model = as_artifact(model, required=True)
    formats = check_options(
        formats,
        imgsz=imgsz,
        dynamic=dynamic,
        half=half,
        nms=nms,
        nms_conf=nms_conf,
        nms_iou=nms_iou,
        nms_max_det=nms_max_det,
        triton_name=triton_name,
        triton_max_batch=triton_max_batch,
        verify=verify,
    )
    check_flags(progress=progress)
    for fmt in formats:
        reason = EXPORTERS[fmt].unavailable()
        if reason:
            raise ExportError(f"cannot export {fmt}: {reason}")
    if isinstance(model, nn.Module) and not isinstance(model, Detector):
        # its artifact was checked against itself and "passed", and then no predict decoded it
        raise ModelError(
            f"model: export needs a yoloslim Detector or checkpoint, got {type(model).__name__} "
            "(its outputs are no detector's, so the artifact would not decode into boxes)"
        )
    if isinstance(model, nn.Module):
        # a Detector loaded from a checkpoint remembers its training size
        ck_imgsz, names = getattr(model, "imgsz", None), list(getattr(model, "names", []) or [])
        net = model
    else:
        net, ckpt = load_checkpoint(model)
        ck_imgsz, names = ckpt["imgsz"], list(ckpt["names"])
    imgsz = imgsz or ck_imgsz or DEFAULT_IMGSZ
    check_imgsz(imgsz, f"imgsz (from {model if not isinstance(model, nn.Module) else 'the model'})")
    if not names:
        names = default_names(int(getattr(net, "nc", 0)))
    nc = getattr(net, "nc", None)
    if nc is not None and len(names) != int(nc):  # a checkpoint's are checked when it loads
        raise ConfigError(
            f"model.names has {len(names)} entries but the model predicts {nc} classes; the "
            "artifact's metadata would misname them"
        )
    # which model: the entries an earlier export into ``out`` left say theirs
    source = {
        "model": str(model) if not isinstance(model, nn.Module) else type(model).__name__,
        "model_digest": weights_digest(net)[:12],
    }
    ctx = ExportContext(
        net,  # the fused model once re-parameterised, below
        names,
        imgsz,
        Path(),  # the output folder, once made
        dynamic=dynamic,
        half=half,
        strides=tuple(getattr(net, "strides", (8, 16, 32))),
        triton_name=triton_name,
        triton_max_batch=triton_max_batch,
    )
    out, made = _output_folder(out)
    ctx.out = out
    # a call refused (or failed) before it wrote anything leaves no empty folder behind
    with removed_if_left_empty(out, made), folder_lock(out, "export"):
        remove_stale_staging(out)  # a killed export's; none is live while we hold the lock
        remove_stale_temps(out, ("export_report.json",))
        previous = _previous_report(out)
        _refuse_foreign_files(ctx, formats, nms, previous)
        earlier = _earlier_entries(previous, formats, nms, out)
        redo = [*formats, *(["onnx_nms"] if nms else [])]
        if previous is not None and set(earlier) != set(previous["formats"]):
            # the formats this call redoes are overwritten one by one: if it is stopped half
            # way, the report must not describe an earlier model's files under their names,
            # and its header is this call's (every entry says what it was made with; those
            # of the formats to redo stay listed until each begins: a kill -9 before the
            # first had finished dropped them for good, audit42 export M1)
            now = {"imgsz": imgsz, "dynamic": dynamic, "half": half, **source}
            untouched = _with_untouched(earlier, previous, redo, set(), out)
            _write_report(out, {**previous, **now, "formats": untouched})

        if any(p.dtype != torch.float32 for p in net.parameters()):
            # a Detector readied for half-precision inference: every format is written
            # from FP32 (half=True stores FP16 weights where a format can); a copy, the
            # caller's model stays as it is
            net = copy.deepcopy(net).float()
        reparam = reparameterize(net, example_input=probe_images(imgsz), measure=False)
        fused = reparam.model
        ctx.model = fused
        report: dict = {
            "imgsz": imgsz,
            "dynamic": dynamic,
            "half": half,
            **source,
            "torch_version": torch.__version__,
            "reparameterize": reparam.report,
            "out": str(out),  # what the entries' relative paths start with
            "formats": dict(earlier),
        }
        artifacts: dict[str, Path] = {}
        failed: list[str] = []  # one format's failed check does not cost the others
        e2e = {"conf": nms_conf, "iou": nms_iou, "max_det": nms_max_det} if nms else None
        started: set[str] = set()  # a stopped format may have replaced some of its files

        def so_far() -> dict:
            """The report as the folder is now: the formats done keep their entries, and
            the ones not yet begun, whose files are still an earlier export's, stay listed
            as that export's; written as each format begins and after it, so that a stop
            (even kill -9) leaves a report of what is there (it listed none of them: audit26
            export L1)."""
            return {
                **report,
                "formats": _with_untouched(report["formats"], previous, redo, started, out),
            }

        try:
            for i, fmt in enumerate(formats, 1):
                started.add(fmt)
                _write_report(out, so_far())  # its earlier entry goes before its files do
                if progress:
                    say(f"export: {fmt} ({i}/{len(formats)}): converting and checking")
                step = functools.partial(
                    _export_one, fmt, ctx, report, artifacts, failed, previous, verify
                )
                was = (
                    _surviving(previous, previous["formats"].get(fmt), out, fmt)
                    if previous
                    else None
                )
                _recorded(fmt, step, report, artifacts, failed, was)
                _write_report(out, so_far())
                if progress:
                    say(f"export: {fmt}: {_outcome(report['formats'].get(fmt, {}))}")
                if fmt != "onnx" or e2e is None:
                    continue
                onnx_entry = report["formats"]["onnx"]
                started.add("onnx_nms")
                _write_report(out, so_far())
                if onnx_entry.get("passed", not verify):  # none from an ONNX that disagrees
                    nms_step = functools.partial(
                        _export_nms, ctx, report, artifacts, failed, verify, e2e
                    )
                    was = (
                        _surviving(previous, previous["formats"].get("onnx_nms"), out)
                        if previous
                        else None
                    )
                    _recorded("onnx_nms", nms_step, report, artifacts, failed, was)
                    if progress:
                        say(f"export: onnx_nms: {_outcome(report['formats'].get('onnx_nms', {}))}")
                if "onnx_nms" not in report["formats"]:
                    # no NMS graph from this ONNX: an earlier one left on disk stays listed
                    # as the earlier export's it is
                    was = (previous or {"formats": {}})["formats"].get("onnx_nms")
                    kept = _surviving(previous, was, out)
                    if kept is not None:
                        report["formats"]["onnx_nms"] = kept
                _write_report(out, so_far())
        except BaseException:
            # stopped (Ctrl-C) or failed inside a format: the report of what is there
            with contextlib.suppress(OSError):
                _write_report(out, so_far())
            raise
        finally:
            ctx.cleanup()
        _write_report(out, report)
        if failed:
            listed = [f for f in report["formats"] if f in artifacts]
            good = [f for f in listed if report["formats"][f].get("passed")]
            unrun = [f for f in listed if report["formats"][f].get("passed", False) is None]
            kept = [e["earlier"]["path"] for e in report["formats"].values() if "earlier" in e]
            error = ExportError(
                f"{'; '.join(failed)} (recorded in {out / 'export_report.json'} with passed: false"
                + (f"; {', '.join(good)} passed and stay" if good else "")
                + (f"; {', '.join(unrun)} written, not run here (passed: null)" if unrun else "")
                + (f"; the earlier export's {', '.join(kept)} stays as it was" if kept else "")
                + ")"
            )
            error.report = report  # what export_report.json got (the command's --json)
            error.failed = failed  # each failure's own line, without the record's
            raise error
        return Result(fused, report, artifacts)


def _outcome(entry: dict) -> str:
    """One line for the log about a format's report ``entry``: its check, then its file."""
    passed = entry.get("passed")
    if passed is False:
        return f"failed ({entry.get('error') or 'disagrees with PyTorch'})"
    diff = entry.get("max_abs_diff")
    if passed:
        check = f"checked, max |diff| {diff:.2e}" if diff is not None else "checked"
    elif entry.get("verified") is False:
        check = "written unchecked (verify off)"
    else:  # null: no output compared here (CoreML off macOS)
        check = f"written; {entry.get('verified') or 'not run here'}"
    return f"{check} -> {entry.get('path')}"


def _recorded(
    name: str, step, report: dict, artifacts: dict, failed: list[str], was: dict | None = None
) -> None:
    """Run ``step``; an error it raises (its file written but refused by its runtime, or
    not written at all: a file in the way, a converter's failure) is recorded under ``name``
    like a failed check, so the other formats still go. A stop a library wrapped in its own
    error is still a stop. ``was``: an earlier export's entry of ``name`` whose file exists;
    when this one wrote nothing, that file is still the earlier export's, and the entry
    keeps it as ``earlier`` (a later export lists it again)."""
    try:
        step()
    except (YoloslimError, OSError) as e:
        if stop_requested() is not None:
            raise
        entry = report["formats"].setdefault(name, {"path": None})
        entry.update(passed=False, error=f"{type(e).__name__}: {e}")
        if entry.get("path") is None and was is not None:
            entry["earlier"] = was
        failed.append(f"{name}: {e}")
        artifacts.pop(name, None)


def _export_one(
    fmt: str,
    ctx: ExportContext,
    report: dict,
    artifacts: dict[str, Path],
    failed: list[str],
    previous: dict | None,
    verify: bool,
) -> None:
    """Write and check one format into ``report``.

    The check runs on the artifact while it is still staged (``ctx.check``, which the
    exporter hands to :func:`yoloslim.fileio.staged`): one that fails it raises here, before
    it takes the artifact's name, and :func:`_recorded` keeps an earlier export's file
    there as ``earlier``. A registered exporter that does not run ``ctx.check`` is checked
    once its file is in place, as before."""
    out = ctx.out
    exporter = EXPORTERS[fmt]
    checked: dict = {}
    ctx.check = functools.partial(_check_staged, exporter.verify, ctx, checked) if verify else None
    try:
        path = exporter.export(ctx)
    finally:
        ctx.check = None
    artifacts[fmt] = path
    entry: dict = {"path": str(path), "size_mb": path_size_mb(path)}
    report["formats"][fmt] = entry
    _keep_other_variant(report["formats"], previous, fmt, path, out)
    if ctx.half and not exporter.honours_half:
        entry["note"] = f"{fmt} keeps FP32 weights (half applies to OpenVINO/CoreML/TensorRT)"
    if ctx.dynamic and exporter.static_batch:
        entry["note"] = f"{fmt} keeps a batch of 1 (dynamic does not apply to it)"
        log.warning("%s: %s", path, entry["note"])
    log.info("exported %s -> %s", fmt, path)
    if not verify:
        entry["verified"] = False
    elif checked:  # checked where it was staged: the path and size are the final file's
        entry.update({k: v for k, v in checked.items() if k not in entry})
    else:
        _checked(exporter.verify, path, ctx, entry, failed, fmt)


def _check_staged(verify_fn, ctx: ExportContext, into: dict, staged: Path) -> None:
    """``verify_fn`` run on a staged artifact (``ctx.check``), its report kept in ``into``;
    a mismatch raises, and the artifact is discarded (:func:`yoloslim.fileio.staged`)."""
    into.update(verify_fn(staged, ctx))


def _export_nms(
    ctx: ExportContext,
    report: dict,
    artifacts: dict[str, Path],
    failed: list[str],
    verify: bool,
    settings: dict,
) -> None:
    """Append NMS (``settings``: conf, iou, max_det) to the ONNX just written, as
    ``{stem}_e2e.onnx``, and check it against the plain ONNX's postprocess while it is
    staged (a graph that fails the check does not replace an earlier one)."""
    from yoloslim.export.nms import append_nms

    path = artifacts["onnx"]
    checked: dict = {}
    check = None
    if verify:
        check = functools.partial(
            _check_staged, functools.partial(_verify_nms, plain=path), ctx, checked
        )
    e2e = append_nms(path, ctx.out / f"{ctx.stem}_e2e.onnx", **settings, check=check)
    artifacts["onnx_nms"] = e2e
    nms_entry: dict = {"path": str(e2e), "size_mb": path_size_mb(e2e)}
    nms_entry.update({k: v for k, v in checked.items() if k not in nms_entry})
    report["formats"]["onnx_nms"] = nms_entry


def _checked(verify_fn, path: Path, ctx: ExportContext, entry: dict, failed: list, fmt: str):
    """Run a verification into ``entry`` (of an artifact already in place: an exporter
    that does not run ``ctx.check``); a mismatch is recorded there (``passed: false``,
    ``error``) and in ``failed``. Returns whether it passed."""
    try:
        entry.update(verify_fn(path, ctx))
        return True
    except ExportError as e:
        if stop_requested() is not None:  # a stop the runtime wrapped
            raise
        entry.update(passed=False, error=str(e))
        failed.append(f"{fmt}: {e}")
        return False


def _verify_nms(e2e: Path, _ctx: ExportContext, *, plain: Path) -> dict:
    from yoloslim.export.nms import verify_nms
    from yoloslim.extras import installed

    # OpenVINO runs the graph too where it is installed; the onnx extra alone lacks it (it
    # was an ImportError's traceback after model.onnx was written: audit44 export F1)
    runtimes = ("onnxruntime", "openvino") if installed("openvino") else ("onnxruntime",)
    report = verify_nms(e2e, plain, runtimes=runtimes)
    if "openvino" not in runtimes:
        report["note"] = "checked in ONNX Runtime only: openvino is not installed"
    return report


def _output_folder(out: str | Path) -> tuple[Path, Path | bool]:
    """The output folder, made; and the outermost folder this call made (False: none)."""
    check_path(out, "out", "the output folder's path")
    out = Path(out).expanduser()
    problem = folder_problem(out)
    if problem:
        raise ExportError(f"cannot create the output folder {out}: {problem}")
    made = first_missing(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the output folder {out}: {e}") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise ExportError(f"the output folder {out} is not writable")
    return out, made


# what every export_report.json yoloslim writes holds (a JSON file that merely has a
# "formats" mapping is a user's, not an earlier export's record)
_REPORT_KEYS = {"imgsz": int, "torch_version": str, "reparameterize": dict, "formats": dict}


def _previous_report(out: Path) -> dict | None:
    """``out/export_report.json`` of an earlier export into ``out`` (None when there is none,
    or it is not one of ours: :func:`_refuse_foreign_files` refuses to replace that)."""
    try:
        old = json.loads((out / "export_report.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict):
        return None
    ours = all(isinstance(old.get(k), t) for k, t in _REPORT_KEYS.items())
    return old if ours else None


def _refuse_foreign_files(
    ctx: ExportContext, formats: list[str], nms: bool, previous: dict | None
) -> None:
    """ConfigError, before any work, when this export would replace a file yoloslim did not
    write: ``export_report.json`` that is not an export's record (:func:`_previous_report`),
    or a file under an artifact's name that neither carries yoloslim's metadata
    (:func:`~yoloslim.export.common.made_by_yoloslim`) nor is listed in the folder's
    report. A Triton model's ``config.pbtxt`` must be one yoloslim wrote and unedited since,
    and its folder hold no other version (:func:`~yoloslim.export.triton.triton_model_problem`).
    Something of another kind in the way (a folder where a file goes) is left to the format's
    own error, which costs only that format."""
    record = ctx.out / "export_report.json"
    if previous is None and (record.exists() or record.is_symlink()):
        raise ConfigError(
            f"{record} is not a yoloslim export report (it lacks "
            f"{', '.join(_REPORT_KEYS)}), and export writes its record under that name: move "
            "it away, or choose another output folder"
        )
    listed = _listed_files(previous, ctx.out)
    targets = []
    for fmt in formats:
        target = EXPORTERS[fmt].target
        if target is None:  # a registered exporter that does not say where it writes
            continue
        path = target(ctx)
        if fmt == "triton":
            problem = triton_model_problem(path.parent)
            if problem:
                raise ConfigError(
                    f"{problem}: move it away, or choose another triton_name (--triton-name)"
                )
            path = path.parent / VERSION / "model.onnx"  # the config is known to be ours
        targets.append(path)
    if nms:
        targets.append(ctx.out / f"{ctx.stem}_e2e.onnx")
    for path in targets:
        if not path.exists() or path.is_dir() != (path.suffix == ".mlpackage"):
            continue  # nothing there, or something in the way: that format's own error
        if file_key(path) not in listed and not made_by_yoloslim(path):
            raise ConfigError(
                f"{path} is not a yoloslim artifact (it has no yoloslim metadata, and no "
                f"export_report.json of {ctx.out} lists it), and this export would replace "
                "it: move it away, or choose another output folder"
            )


def _listed_files(old: dict | None, out: Path) -> set:
    """The files (:func:`~yoloslim.fileio.file_key`) an earlier report of ``out`` lists."""
    if old is None:
        return set()
    listed = set()
    for entry in old["formats"].values():
        for e in (entry, entry.get("earlier") if isinstance(entry, dict) else None):
            if isinstance(e, dict) and isinstance(e.get("path"), str):
                path = _report_path(old, e["path"], out)
                if path.exists():
                    listed.add(file_key(path))
    return listed


def _report_path(old: dict, path: str, out: Path) -> Path:
    """A path an earlier report of ``out`` names, as a file of ``out``: a path inside the
    report's ``out`` is taken inside this ``out`` (relative ones were relative to the working
    directory of that export; and a copied export folder's report names the original
    folder's files: this one's count)."""
    p = Path(path)
    if isinstance(old.get("out"), str):
        with contextlib.suppress(ValueError):
            p = out / p.relative_to(old["out"])
    return p


def _surviving(old: dict, entry, out: Path, fmt: str = "") -> dict | None:
    """An earlier report's entry (of format ``fmt``), with the settings it was exported
    with, if its artifact still exists (where :func:`_report_path` finds it)."""
    if isinstance(entry, dict) and not entry.get("path") and "earlier" in entry:
        entry = entry["earlier"]  # this format failed then, and wrote nothing over it
    if not isinstance(entry, dict) or not entry.get("path"):
        return None
    path = _report_path(old, entry["path"], out)
    if not path.exists():
        return None
    settings = {k: old.get(k) for k in _SETTINGS}
    # what the artifact is, not what the flags asked for: a Triton model's ONNX has a dynamic
    # batch axis whatever --dynamic said, CoreML a batch of 1, and only some formats store
    # FP16 weights (a kept ONNX read as FP16, a kept CoreML package as dynamic)
    name = fmt.split(":")[0].split("_")[0]
    exporter = EXPORTERS.get(name)
    if name == "triton":
        settings["dynamic"] = True
    elif exporter is not None and exporter.static_batch:
        settings["dynamic"] = False
    if exporter is not None and not exporter.honours_half:
        settings["half"] = False
    return {**entry, "path": str(path), "exported_with": entry.get("exported_with", settings)}


# what an earlier export's kept entries record they were made with
_SETTINGS = ("imgsz", "dynamic", "half", "model", "model_digest")


def _keep_other_variant(formats: dict, old: dict | None, fmt: str, path: Path, out: Path) -> None:
    """Keep an earlier export of ``fmt`` that this one wrote beside rather than over: OpenVINO
    FP32 and FP16 have their own folders (kept as ``{fmt}_fp32`` or ``{fmt}_fp16``), and a
    Triton repository holds a model per ``--triton-name`` (kept as ``triton:NAME``). Drop a
    kept entry that names the file this call just wrote."""
    for key in [k for k, e in formats.items() if k != fmt and e.get("path") == str(path)]:
        del formats[key]
    entry = _surviving(old, old["formats"].get(fmt), out, fmt) if old else None
    if entry is not None and Path(entry["path"]) != path:
        if fmt == "triton":  # another model of the repository, not a variant of this one
            key = f"triton:{Path(entry['path']).parent.name}"
        else:
            key = f"{fmt}_{'fp16' if entry['exported_with'].get('half') else 'fp32'}"
        formats[key] = entry


def _with_untouched(
    entries: dict, old: dict | None, redo: list[str], started: set[str], out: Path
) -> dict:
    """``entries``, and for each format of ``redo`` not begun yet (not in ``started``) nor
    among them, the earlier report's entry, whose files are still that export's as long as
    they exist (:func:`_surviving`)."""
    now = dict(entries)
    for fmt in redo if old else []:
        was = _surviving(old, old["formats"].get(fmt), out, fmt)
        if fmt not in started and fmt not in now and was is not None:
            now[fmt] = was
    return now


def _earlier_entries(old: dict | None, formats: list[str], nms: bool, out: Path) -> dict:
    """The entries of an earlier ``export_report.json`` that this call does not redo and
    whose artifacts still exist, each with the settings it was exported with."""
    if old is None:
        return {}
    redo = set(formats) | ({"onnx_nms"} if nms else set())
    kept = {}
    for fmt, entry in old["formats"].items():
        surviving = None if fmt in redo else _surviving(old, entry, out, fmt)
        if surviving is not None:
            if fmt in ("triton_fp32", "triton_fp16"):  # another model, as reports once named it
                fmt = f"triton:{Path(surviving['path']).parent.name}"
            kept[fmt] = surviving
    if kept:
        log.info("keeping the report entries of earlier exports: %s", sorted(kept))
    return kept


def _write_report(out: Path, report: dict) -> None:
    atomic_write_text(out / "export_report.json", json.dumps(report, indent=2, default=str) + "\n")
