"""``yoloslim predict``."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import typer
from rich.markup import escape

from yoloslim.cli.common import (
    DEVICE_HELP,
    STDOUT,
    THREADS_HELP,
    check_json_target,
    check_out_folder,
    console,
    err_console,
    expand_home,
    file_identity,
    handle_errors,
    same_path,
    warn,
    write_json,
)
from yoloslim.fileio import (
    appendable,
    atomic_write_bytes,
    atomic_write_text,
    first_missing,
    folder_lock,
    remove_stale_temps,
    removed_if_left_empty,
)


@handle_errors
def predict(
    source: Path = typer.Argument(
        ..., callback=expand_home, help="Image file, folder of images, or video file."
    ),
    model: Path = typer.Option(..., help="Artifact: .pt, .torchscript, .onnx or .xml."),
    save: Path = typer.Option(
        None,
        callback=check_out_folder,
        help="Folder for the drawn images (SAVE/<stem>.jpg; <stem>_<ext>.jpg where two "
        "images share a stem, then _2, _3 where that is taken) or video (SAVE/<stem>.mp4), "
        "and detections.json. Refused when a drawn file would replace an input (e.g. a .jpg "
        "source in its own folder) or a file predict did not draw, when it holds a "
        "detections.json predict did not write, or while another predict writes there.",
    ),
    save_txt: bool = typer.Option(
        False,
        "--save-txt",
        help="Also write a YOLO label file per image, SAVE/labels/<name>.txt (<name> as its "
        "drawn image): one 'cls cx cy w h' line per detection, normalised, no score, the "
        "format data.yaml sets read. Images only. A label file there that predict did not "
        "write, or that was edited since, is not replaced (SAVE/labels/predict_labels.jsonl "
        "lists what predict wrote).",
    ),
    conf: float = typer.Option(0.25, help="Confidence threshold."),
    iou: float = typer.Option(0.65, help="NMS IoU threshold."),
    imgsz: int = typer.Option(None, help="Input size, a multiple of 32 (default: the artifact's)."),
    batch: int = typer.Option(8, help="Images (or video frames) per runtime call."),
    max_det: int = typer.Option(300, help="Detections kept per image (or frame)."),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    ov_precision: str = typer.Option(
        None,
        help="OpenVINO .xml only: compute in f32 (the checkpoint's detections), bf16 or f16 "
        "(default: the plugin's choice, bf16 on AVX512-BF16/AMX CPUs).",
    ),
    threads: int = typer.Option(None, help=THREADS_HELP),
    json_path: str = typer.Option(
        None,
        "--json",
        callback=check_json_target,
        help="Write the detections as JSON ({source, model, results: \\[detections.json's "
        "records], complete}), with or without --save; written once the run is done, or "
        "with the results so far (complete: false) when it is stopped.",
    ),
) -> None:
    """Detect objects; prints a summary and, with --save, writes drawn images/video and JSON.

    A folder is read one image at a time (not its subfolders, nor hidden files); images
    that cannot be decoded are skipped with a warning.
    """
    from yoloslim.errors import ConfigError, DataError
    from yoloslim.runtime.draw import drawn_paths
    from yoloslim.runtime.images import image_files
    from yoloslim.runtime.predictor import Predictor, check_count
    from yoloslim.runtime.video import is_video

    check_count("batch", batch)  # before a video's frames pile up waiting for a full batch
    if json_path and save and same_path(Path(json_path), save / "detections.json"):
        raise ConfigError(
            f"--json {json_path} is --save's detections.json, which predict writes itself; "
            "name another file"
        )
    if json_path and Path(json_path).is_file() and _is_a_runs_record(Path(json_path)):
        # another predict's --save folder record (a list of records, not a --json report):
        # replaced, every later --save there was refused as "not written by predict"
        raise ConfigError(
            f"--json {json_path} is the detections.json of the predict run in "
            f"{Path(json_path).parent}; it is not replaced by the report: name another file"
        )
    video = is_video(source)
    if video and not source.is_file():
        from yoloslim.runtime.images import pattern_hint

        raise DataError(f"{source}: video does not exist{pattern_hint(source)}")
    if save_txt and (save is None or video):
        raise ConfigError(
            "--save-txt writes SAVE/labels/ and needs --save DIR"
            if save is None
            else f"--save-txt writes a label file per image; {source} is a video, whose "
            "detections per frame go to detections.json"
        )
    files = [source] if video else image_files(source)
    outputs = drawn_paths(files, save, video=video) if save else {}
    labels = {f: save / "labels" / f"{d.stem}.txt" for f, d in outputs.items()} if save_txt else {}
    written = [*outputs.values(), *labels.values()]
    if json_path and any(same_path(Path(json_path), p) for p in written):
        # the report replaced a pseudo-label, and the next run refused it as edited
        raise ConfigError(
            f"--json {json_path} is a file this run writes into --save {save}; name another file"
        )
    if save:
        earlier = _earlier_records(save / "detections.json")
        _check_drawn_names(save, outputs)
        ledger = _label_ledger(save)
        _check_label_names(save, labels, earlier, ledger)
        _warn_inside_source(source, save)
    pred = Predictor(
        model,
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        max_det=max_det,
        ov_precision=ov_precision,
        device=device,
        threads=threads,
    )
    if pred.backend.kind == "openvino" and ov_precision is None:
        chosen = str(pred.backend.precision)
        if "bf16" in chosen or "fp16" in chosen:  # said only by -v: detections near the
            # threshold differ from the checkpoint's (audit24 predict LOW-6)
            err_console.print(
                f"[dim]note: OpenVINO computes this IR in {escape(chosen)} here (its default); "
                "--ov-precision f32 gives the checkpoint's detections[/]",
                soft_wrap=True,
            )
    records = _Records(save, ledger if save_txt else None)
    # a second predict into the same --save is refused (detections.json would hold one of
    # them); held until detections.json is written
    made = first_missing(save) if save else False  # removed again if the run writes nothing
    with (
        removed_if_left_empty(save, made),
        folder_lock(save, "predict") if save else contextlib.nullcontext(),
    ):
        if save:  # a killed run's half-written files: none is live while we hold the lock
            remove_stale_temps(
                save, ["detections.json", LEDGER, *(d.name for d in outputs.values())]
            )
            remove_stale_temps(save / "labels", [p.name for p in labels.values()])
            # once every check that refuses the run has passed, the model loaded and the
            # folder held: "replaces it" was said of a run refused (audit44 eval L-2, review
            # F12)
            _warn_other_records(save, earlier, files, outputs, labels=bool(labels))
        drawn = outputs.get(source) if video else None
        earlier_video = (
            None if drawn is None else file_identity(drawn)
        )  # an earlier run's drawing of this video, or None
        try:
            if video:
                _predict_video(pred, source, outputs.get(source), batch, records)
            else:
                _predict_images(pred, source, files, outputs, labels, batch, records)
        except BaseException:
            if save and records:  # keep what was computed before the stop or the error
                try:
                    _write_detections(save, records)
                except OSError as e:  # a full disk, as likely the error itself: that is said
                    err_console.print(
                        f"the {len(records)} results so far could not be kept either "
                        f"({escape(str(e.filename))}: {escape(str(e.strerror or e))})"
                    )
                else:
                    earlier = (
                        f"; the drawn {escape(drawn.name)} there is an earlier run's (a video "
                        "is replaced only once drawn whole)"
                        if earlier_video is not None and file_identity(drawn) == earlier_video
                        else ""
                    )
                    err_console.print(
                        f"detections.json in {escape(str(save))} holds the {len(records)} "
                        f"results so far{earlier}"
                    )
            if json_path:  # --json alone kept nothing of a stopped run (none so far: [])
                with contextlib.suppress(OSError):
                    write_json(json_path, _report(source, model, records, complete=False))
                    if str(json_path) != STDOUT:
                        err_console.print(
                            f"--json {escape(str(json_path))} holds the {len(records)} results "
                            'so far ("complete": false)'
                        )
            raise
        if save:
            _write_detections(save, records)
            console.print(
                f"wrote {len(records)} results and detections.json to {escape(str(save))}",
                soft_wrap=True,
            )
    write_json(json_path, _report(source, model, records, complete=True))


def _report(source, model, records: list, complete: bool) -> dict:
    """``--json``'s object: ``complete`` false for the results of a stopped run."""
    return {
        "source": str(source),
        "model": str(model),
        "results": list(records),
        "complete": complete,
    }


class _Records(list):
    """The results so far, each appended once its image's files are written. The first one
    removes an earlier run's ``detections.json`` from ``save``: this run's drawn images have
    started to replace that run's, which it no longer describes (a run that fails before its
    first result leaves both as they were). A drawn
    video replaces the earlier one only once whole, so a stopped video run leaves its
    partial ``detections.json`` beside the earlier run's video.

    ``ledger`` (with ``--save-txt``): the label files predict has written into ``save``,
    each with the digests of what it wrote there; this run's are appended to the ledger's
    file before each label is written, so a run killed half way (SIGKILL) leaves no label
    file that the next run takes for the user's."""

    def __init__(self, save: Path | None, ledger: dict[str, set[str]] | None = None) -> None:
        super().__init__()
        self.save, self.ledger = save, ledger

    def append(self, record: dict) -> None:
        if not self and self.save is not None:
            (self.save / "detections.json").unlink(missing_ok=True)
        super().append(record)

    def write_label(self, path: Path, text: str) -> str:
        """Enter a label file in the ledger, then write it; its name relative to ``save``."""
        path.parent.mkdir(exist_ok=True)
        name = path.relative_to(path.parent.parent).as_posix()
        if self.ledger is not None and self.save is not None:
            digest = _digest(text.encode())
            with appendable(self.save / LEDGER).open("a+b") as f:
                torn = False
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(-1, os.SEEK_END)
                    torn = f.read(1) != b"\n"
                # a line a kill cut short ends there, not at the start of this one
                f.write(b"\n" * torn + json.dumps({"label": name, "sha1": digest}).encode())
                f.write(b"\n")
            self.ledger.setdefault(name, set()).add(digest)
        atomic_write_text(path, text)
        return name


# the label files predict wrote into --save: one JSON line per file written, its digest
LEDGER = "labels/predict_labels.jsonl"


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data).hexdigest()


def _label_ledger(save: Path) -> dict[str, set[str]]:
    """The label files earlier predicts wrote into ``save``, each with the digests of what
    was written (``{}`` when none); a line a kill cut short is skipped. ConfigError when a
    file of the ledger's name does not start as one: it is not predict's to append to."""
    from yoloslim.errors import ConfigError

    path = save / LEDGER
    if not path.exists():
        return {}
    ledger: dict[str, set[str]] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        lines = None
    for n, line in enumerate(lines or [], start=1):
        try:
            entry = json.loads(line)
            ledger.setdefault(entry["label"], set()).add(entry["sha1"])
        except (ValueError, TypeError, KeyError):
            if n == 1:  # not a ledger at all: a file of the user's with that name
                lines = None
                break
            # a line a kill cut short: what it names was never written
    if lines is None:
        raise ConfigError(
            f"--save {save}: {path} was not written by predict; it is not replaced, so move "
            "it or choose another --save folder"
        )
    return ledger


def _compact_ledger(save: Path, ledger: dict[str, set[str]]) -> None:
    """The ledger's file rewritten with one line per label file still there whose content
    predict wrote (the files that are gone, or were edited since, leave it)."""
    lines = []
    for name in sorted(ledger):
        try:
            now = _digest((save / name).read_bytes())
        except OSError:
            continue
        if now in ledger[name]:
            lines.append(json.dumps({"label": name, "sha1": now}) + "\n")
    atomic_write_text(save / LEDGER, "".join(lines))


# what predict writes: each record holds exactly these keys, each detection exactly DETECTION
_IMAGE_RECORD = ({"image", "detections"}, {"image", "detections", "labels"})
# (frame records of earlier versions lack "video", then "time")
_FRAME_RECORD = (
    {"video", "frame", "time", "detections"},
    {"video", "frame", "detections"},
    {"frame", "detections"},
)
_DETECTION = {"box", "score", "class_id", "class"}


def _predicts_format(data: object) -> bool:
    """Whether ``data`` is a ``detections.json`` as predict writes one: a list of image records
    or of frame records, with exactly predict's keys in each record and each detection (a
    file of the user's that merely looks like one is not; an empty list, which a run over
    unreadable images writes, holds nothing to lose)."""
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        return False
    kinds = _FRAME_RECORD if data and "frame" in data[0] else _IMAGE_RECORD
    return all(
        set(r) in kinds
        and isinstance(r.get("image", r.get("video", "")), str)  # a path: read as one
        and isinstance(r["detections"], list)
        and all(isinstance(d, dict) and set(d) == _DETECTION for d in r["detections"])
        for r in data
    )


def _is_a_runs_record(path: Path) -> bool:
    """Whether ``path`` is a ``detections.json`` a predict wrote into its ``--save`` folder
    (a list of records; a ``--json`` report is a mapping, replaced run after run)."""
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, OSError):
        return False
    return bool(data) and _predicts_format(data)


def _earlier_records(path: Path) -> list[dict]:
    """The records of the ``detections.json`` an earlier predict wrote at ``path`` (none when
    there is none); ConfigError when ``path`` exists and is not in predict's format (see
    :func:`_predicts_format`): it is not predict's to replace."""
    from yoloslim.errors import ConfigError

    if not path.exists():
        return []
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, OSError):
        data = None
    if not _predicts_format(data):
        raise ConfigError(
            f"--save {path.parent}: {path} was not written by predict (or was edited since): "
            "it is not a list of predict's records ({image | video, frame and time, detections: "
            "[{box, score, class_id, class}]}, with labels where --save-txt wrote one); it is "
            "not replaced, so move it or choose another --save folder"
        )
    return data


def _warn_other_records(
    save: Path,
    earlier: list[dict],
    files: list[Path],
    outputs: dict[Path, Path],
    labels: bool = False,
) -> None:
    """A warning when the folder's ``detections.json`` holds records of images or of a video
    this run does not predict: this run's replaces it, and their drawings and labels stay in
    the folder without one, but for those this run's drawings (and, with ``labels``, label
    files) take the names of (an ``x/a.jpg`` of the earlier run and a ``y/a.jpg`` of this
    one: audit52 predict F1). An earlier record's drawn name is its label file's where it
    has one, else as its run named them from the images of its records (an input that run
    skipped, which left no record, may have shifted a name: a limit). (Frame records of
    earlier versions, which do not name their video, are not counted.)"""
    from yoloslim.runtime.draw import drawn_names

    now = {str(Path(f).absolute()) for f in files}
    gone = [str(r["image"]) for r in earlier if "image" in r]
    names = {str(k): v for k, v in drawn_names([Path(n) for n in gone]).items()}
    for r in earlier:
        if "image" in r and isinstance(r.get("labels"), str):
            names[str(r["image"])] = Path(r["labels"]).stem + ".jpg"
    gone = [n for n in gone if str(Path(n).absolute()) not in now]
    ours = {d.name for d in outputs.values()}
    folded = {d.name.lower(): d.name for d in outputs.values()}

    def taken(name: str) -> bool:
        """This run draws ``name``: by that very name, or by one that differs in case on a
        file system that folds case (where both name one file; review F3)."""
        if name in ours:
            return True
        other = folded.get(name.lower())
        if other is None:
            return False
        a, b = save / name, save / other
        return a.exists() and b.exists() and os.path.samefile(a, b)

    replaced = [n for n in gone if taken(names[n])]
    # a video's records: another video's where this run draws no video of its name (the
    # same video, given from another folder, is not another: review F4; images of its stem
    # draw JPEGs, which replace nothing of it: review F9)
    videos = {d.name for d in outputs.values() if d.suffix == ".mp4"}
    gone += [
        str(r["video"])
        for r in earlier
        if "video" in r and f"{Path(r['video']).stem}.mp4" not in videos
    ]
    if gone:
        from yoloslim.data.sample import examples

        shown = examples(list(dict.fromkeys(gone)))
        what = "images" if "image" in earlier[0] else "frames of a video"
        ours_what = "drawings and labels" if labels else "drawings"
        if not replaced:
            fate = "their drawings and labels stay in the folder without a record"
        elif len(replaced) == len(gone):
            fate = f"their {ours_what} are replaced by this run's of the same names"
        else:
            fate = (
                f"the {ours_what} of {len(replaced)} of them are replaced by this run's "
                f"of the same names ({escape(examples(replaced))}), the others' stay in the "
                "folder without a record"
            )
        if replaced and not labels:
            fate += " (the earlier run's labels stay, all of them, without a record)"
        warn(
            f"--save {escape(str(save))}: its detections.json holds "
            f"{len(gone)} record(s) of {what} this run does not predict ({escape(shown)}); "
            f"this run's detections.json replaces it, and {fate} (another --save keeps them "
            "apart)"
        )


def _check_drawn_names(save: Path, outputs: dict[Path, Path]) -> None:
    """ConfigError when a drawn image or video would replace a file in ``save`` that predict
    did not draw (a photo or video of the user's named like one). Predict's own: a JPEG with
    its comment, a video with it as its container's comment tag. (A name an earlier run's
    records list is no proof: a photo copied in at that name was replaced.)"""
    from PIL import Image

    from yoloslim.errors import ConfigError
    from yoloslim.runtime.draw import DRAWN_COMMENT

    for dst in outputs.values():
        if dst.is_dir():  # found at its image's turn, after all the work before it
            raise ConfigError(
                f"--save {save}: a drawn image goes to {dst}, which is a folder; move it or "
                "choose another --save folder"
            )
        if not dst.is_file():
            continue
        if dst.suffix == ".mp4":
            from yoloslim.runtime.video import video_comment

            ours = video_comment(dst) == DRAWN_COMMENT.decode()
        else:
            try:
                with Image.open(dst) as im:
                    ours = im.info.get("comment") == DRAWN_COMMENT
            except Exception:  # noqa: BLE001 - not an image at all: not ours either
                ours = False
        if not ours:
            what = "video" if dst.suffix == ".mp4" else "image"
            raise ConfigError(
                f"--save {save}: a drawn {what} would replace {dst}, which predict did not "
                "draw; move it or choose another --save folder"
            )


def _check_label_names(
    save: Path, labels: dict[Path, Path], earlier: list[dict], ledger: dict[str, set[str]]
) -> None:
    """ConfigError when a label file would replace one in ``save/labels`` that predict did
    not write, or that was edited since (a pseudo-label corrected by hand). Predict's own:
    a file the ``ledger`` lists with a digest of what it holds now, or one the ``earlier`` records
    (of the ``detections.json`` beside) name (an earlier version kept no ledger). A text
    file carries no mark, and ``labels/`` beside ``images/`` is where a dataset keeps its
    own."""
    from yoloslim.errors import ConfigError

    recorded = {save / r["labels"] for r in earlier if isinstance(r.get("labels"), str)}
    folder = save / "labels"
    if labels and (folder.is_file() or folder.is_symlink() and not folder.is_dir()):
        raise ConfigError(
            f"--save {save}: --save-txt writes into {folder}, which is a file; move it or "
            "choose another --save folder"
        )
    for dst in labels.values():
        name = dst.relative_to(save).as_posix()
        if not dst.exists() or (name not in ledger and dst in recorded):
            continue
        if name not in ledger:
            raise ConfigError(
                f"--save {save}: a label file would replace {dst}, which predict did not "
                "write; move it or choose another --save folder"
            )
        if _digest(dst.read_bytes()) not in ledger[name]:
            raise ConfigError(
                f"--save {save}: a label file would replace {dst}, which was edited since "
                "predict wrote it; move it or choose another --save folder"
            )


def _warn_inside_source(source: Path, save: Path) -> None:
    """ConfigError for a --save folder that is the SOURCE folder, or the folder of a SOURCE
    file (a later predict of it would read the drawn images as inputs); a warning for one
    inside it (a dataset split
    there reads its subfolders too)."""
    from yoloslim.errors import ConfigError

    where = save.expanduser().resolve()
    if source.is_dir() and source.resolve() == where:
        raise ConfigError(
            f"--save {save} is the source folder: the drawn images would join its images, "
            "and a later predict of it would read them as inputs; choose another folder (a "
            "subfolder of it is not read)"
        )
    from yoloslim.runtime.video import is_video

    # an image's folder (a drawn video is no image: a folder's videos are never read)
    if source.is_file() and source.resolve().parent == where and not is_video(source):
        # as for a folder: a later predict of the folder read the drawing as an input
        raise ConfigError(
            f"--save {save} is the folder {source.name} is in: the drawn file would join its "
            "images, and a later predict of the folder would read it as an input; choose "
            "another folder (a subfolder is not read)"
        )
    if source.is_dir() and source.resolve() in where.parents:
        warn(
            f"--save {escape(str(save))} is (inside) {escape(str(source))}: "
            "where that folder is a dataset split, its subfolders are read too, so the drawn "
            "images would join it as images without labels"
        )
    elif _a_dataset_split(where):  # another split than the source's (its train images, say)
        warn(
            f"--save {escape(str(save))} looks like a dataset's image folder "
            "(a labels folder beside it): the drawn images would join that split as images "
            "without labels"
        )


def _a_dataset_split(folder: Path) -> bool:
    """Whether ``folder`` (or a folder above it) is a YOLO image split: ``images/NAME`` with a
    ``labels/NAME`` beside it (Ultralytics), or ``NAME/images`` with ``NAME/labels``
    (Roboflow)."""
    for f in (folder, *folder.parents):
        if f.parent.name == "images" and (f.parent.parent / "labels" / f.name).is_dir():
            return True
        if f.name == "images" and (f.parent / "labels").is_dir():
            return True
    return False


def _write_detections(save: Path, records: _Records) -> None:
    if records.ledger:
        _compact_ledger(save, records.ledger)
    atomic_write_text(save / "detections.json", json.dumps(records, indent=1) + "\n")


def _predict_images(
    pred,
    source: Path,
    files: list[Path],
    outputs: dict[Path, Path],
    labels: dict[Path, Path],
    batch: int,
    records: list,
) -> None:
    from rich.progress import Progress

    from yoloslim.progress import progress_console
    from yoloslim.runtime.draw import DRAWN_COMMENT, JPEG_MAX_SIDE, draw_detections, fit_jpeg

    stream = pred.stream(files, batch=batch, skip_unreadable=source.is_dir(), images=bool(outputs))
    # the bar on standard error, as every command's: `predict DIR > results.txt` held it
    with Progress(console=progress_console(), disable=len(files) < 2) as progress:
        task = progress.add_task("predict", total=len(files))
        for arr, det in stream:
            src = Path(det.source)
            record = {"image": det.source, "detections": det.to_list()}
            if src in labels:
                record["labels"] = records.write_label(labels[src], det.to_yolo())
            if src in outputs:  # whole or not at all, even when stopped mid-write
                drawn = draw_detections(arr, det)
                if max(drawn.size) > JPEG_MAX_SIDE:
                    warn(
                        f"{escape(src.name)}: its drawing is scaled down to "
                        f"{JPEG_MAX_SIDE} px, the most a JPEG holds ({drawn.width}x{drawn.height})"
                    )
                buf = io.BytesIO()  # Pillow's save said nothing when the disk filled
                fit_jpeg(drawn).save(buf, format="JPEG", quality=92, comment=DRAWN_COMMENT)
                atomic_write_bytes(outputs[src], buf.getvalue())
            # a record once its files are written: a stop mid-image left a record whose drawing
            # was never written (a stop in the first image's leaves the earlier run's whole)
            records.append(record)
            console.print(f"{escape(src.name)}: {len(det)} detection{'' if len(det) == 1 else 's'}")
            progress.advance(task)
        progress.update(task, completed=len(files))  # skipped unreadable images count as done
    if len(records) < len(files):
        warn(f"skipped {len(files) - len(records)} unreadable image(s)")


def _predict_video(pred, source: Path, drawn: Path | None, batch: int, records: list) -> None:
    """Frames in batches of ``batch``; writes ``drawn`` (``SAVE/<stem>.mp4``) with boxes drawn."""
    import contextlib

    import numpy as np
    from rich.progress import Progress

    from yoloslim.progress import progress_console
    from yoloslim.runtime.draw import DRAWN_COMMENT, draw_detections
    from yoloslim.runtime.video import VideoReader, VideoWriter, uneven

    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source))
        writer = None
        if drawn is not None:
            writer = stack.enter_context(
                VideoWriter(drawn, reader.fps, comment=DRAWN_COMMENT.decode())
            )
        progress = stack.enter_context(Progress(console=progress_console()))
        task = progress.add_task(f"predict {escape(source.name)}", total=len(reader) or None)

        def flush(frames: list[np.ndarray], times: list[float | None]) -> None:
            got = pred.predict(frames, batch=batch)
            for arr, det, t in zip(frames, got, times, strict=True):
                if writer is not None:  # the frame drawn, then its record (as for images)
                    writer.write(np.asarray(draw_detections(arr, det)))
                records.append(
                    {
                        "video": str(source),
                        "frame": len(records),
                        "time": None if t is None else round(t, 6),
                        "detections": det.to_list(),
                    }
                )
            progress.advance(task, len(frames))

        pending: list[np.ndarray] = []
        times: list[float | None] = []  # each frame's time in the source, in seconds
        for frame in reader:
            pending.append(frame)
            times.append(reader.time)
            if len(pending) == batch:
                flush(pending, times[-batch:])
                pending = []
        if pending:
            flush(pending, times[-len(pending) :])
        if writer is not None and uneven(times, reader.fps):
            warn(
                f"{escape(drawn.name)}: {escape(source.name)}'s frames come at uneven "
                f"intervals (a variable frame rate); the drawn video shows them at its "
                f"average {float(reader.fps):.3g} fps, so its timing differs from the "
                "source's: detections.json has each frame's time in the source"
            )
    n = sum(len(r["detections"]) for r in records)
    console.print(
        f"{escape(source.name)}: {len(records)} frame{'' if len(records) == 1 else 's'}, "
        f"{n} detection{'' if n == 1 else 's'}"
    )
