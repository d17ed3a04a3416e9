"""Label files of a YOLO split that no image reads: an image with a suffix the readers skip
(``.jfif``, ``.gif``, ``.heic``), or one deleted or renamed after labelling. The readers
never look at them, so without this nothing says that labelled data is left unused."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yoloslim.data.formats import label_path_for, walk_files
from yoloslim.data.sample import IMAGE_SUFFIXES

__all__ = ["Orphans", "find_orphans"]

# written beside the labels by LabelImg and Roboflow: class names, not an image's labels
_NOT_LABELS = frozenset({"classes.txt", "notes.txt", "readme.txt"})


@dataclass
class Orphans:
    """Label files no image of the split reads, and image-folder files that are no image.

    Attributes:
        labels: ``labels/.../x.txt``, each followed by ``(image x.jfif: a suffix not read)``
            when a file of that stem sits where its image would.
        unread: Files in the image folders whose suffix the readers skip.
    """

    labels: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)


def find_orphans(folders: list[Path]) -> Orphans:
    """Orphan label files of YOLO image ``folders`` (a split's folder sources; list files
    name images anywhere, so they have no label folder to search).

    The label folder of ``images/train`` is ``labels/train`` (Ultralytics convention); a
    folder without an ``images`` part keeps its labels beside its images.
    """
    out = Orphans()
    for folder in folders:
        files = list(walk_files(folder))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        wanted = {label_path_for(p) for p in images}
        labels_dir = label_path_for(folder / "x.png").parent
        beside = labels_dir == folder
        # files of another kind (hidden ones aside), and the label path each would have
        unread = [
            p
            for p in files
            if p.suffix.lower() not in (*IMAGE_SUFFIXES, ".txt") and not p.name.startswith(".")
        ]
        others = {label_path_for(p): p for p in unread}
        out.unread += [str(p) for p in unread]
        labels = files if beside else list(walk_files(labels_dir)) if labels_dir.is_dir() else []
        for p in labels:
            if p.suffix.lower() != ".txt" or p.name.lower() in _NOT_LABELS or p in wanted:
                continue
            image = others.get(p)
            note = f" (image {image.name}: a suffix not read)" if image is not None else ""
            out.labels.append(f"{p}{note}")
    # overlapping sources (images/train and images/train/sub) walk some folders twice
    out.labels, out.unread = list(dict.fromkeys(out.labels)), list(dict.fromkeys(out.unread))
    return out
