"""Triton Inference Server model repository: ``MODEL/1/model.onnx`` + ``config.pbtxt``."""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from pathlib import Path

from yoloslim.configs import int_problem
from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext, path_size_mb
from yoloslim.export.onnx import DYNAMIC_BATCH_MAX
from yoloslim.fileio import staged

__all__ = [
    "TRITON_BATCH_LIMIT",
    "TRITON_MAX_BATCH",
    "export_triton",
    "parse_config_pbtxt",
    "triton_max_batch_problem",
    "triton_model_dir",
    "triton_model_problem",
    "triton_path",
    "verify_triton",
]

TRITON_MAX_BATCH = 16  # the default max_batch_size
TRITON_BATCH_LIMIT = DYNAMIC_BATCH_MAX  # the ONNX's dynamic batch axis goes up to this
_PREFERRED = (4, 8)


def triton_max_batch_problem(value: object) -> str | None:
    """Why ``value`` cannot be the config's ``max_batch_size``, or None."""
    problem = int_problem(value, 1, TRITON_BATCH_LIMIT)
    return problem and f"{value!r} {problem} (the ONNX's batch axis)"


def triton_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a Triton model (a folder of the repository), or None."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        return f"{name!r} is not a model name (letters, digits, '_', '-', '.')"
    return None


_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def export_triton(ctx: ExportContext) -> Path:
    """Write the repository under ``ctx.out / "triton"``; returns the ``config.pbtxt`` path.

    The model is ``triton/{ctx.triton_name}/``: other models already in ``triton/`` stay, so
    several exports with different names build one repository.

    Triton batches requests itself, so the ONNX always has a dynamic batch axis and
    ``dims`` in the config leave the batch out (``max_batch_size`` is
    ``ctx.triton_max_batch``; the dynamic batcher prefers 4 and 8 where they fit under it).

    The config and ``1/model.onnx`` are written and checked together in a private folder
    (``ctx.check`` sees the pair as Triton would), then moved into place, the ONNX first;
    what else the model's folder holds stays. The config's first line marks it as
    yoloslim's, with a digest of the rest (:func:`triton_model_problem` reads it back).
    """
    from yoloslim.export.onnx import onnx_file

    repo = triton_model_dir(ctx)
    made = [p for p in (repo.parent, repo) if not p.exists()]
    try:
        with staged(repo / "config.pbtxt", (f"{VERSION}/model.onnx",), check=ctx.check) as tmp:
            (tmp.parent / VERSION).mkdir()
            shutil.copyfile(onnx_file(ctx, dynamic=True), tmp.parent / VERSION / "model.onnx")
            tmp.write_text(_marked(_config(ctx)))
    except BaseException:
        for folder in reversed(made):  # no empty model folder named like this one is left
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return repo / "config.pbtxt"


def triton_model_dir(ctx: ExportContext) -> Path:
    """The model's folder in the repository: ``out/triton/NAME``."""
    return ctx.out / "triton" / ctx.triton_name


def triton_path(ctx: ExportContext) -> Path:
    """Where :func:`export_triton` writes the artifact it returns: the model's config."""
    return triton_model_dir(ctx) / "config.pbtxt"


VERSION = "1"  # the model version yoloslim writes

# the config's first line: protobuf text format allows # comments (Triton skips them, and
# parse_config_pbtxt drops them)
_MARK = (
    "# written by yoloslim export; an export does not replace it once edited; "
    "sha256 of the lines below: "
)
_MARKED = re.compile(rf"{re.escape(_MARK)}([0-9a-f]{{64}})\n")


def _marked(config: str) -> str:
    return f"{_MARK}{hashlib.sha256(config.encode()).hexdigest()}\n{config}"


def triton_model_problem(repo: Path) -> str | None:
    """Why an export must not write the Triton model folder ``repo``, or None: its
    ``config.pbtxt`` is not one yoloslim wrote (no first line saying so) or was edited since
    (its digest no longer matches), which the new config would silently replace; or it holds
    another version folder than ``1/``, which Triton's default version policy (the latest
    one) would serve instead of the ``1/`` being written."""
    config = repo / "config.pbtxt"
    if config.is_file():
        try:
            text = config.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return f"{config} cannot be read ({e}), so it is not known to be yoloslim's"
        mark = _MARKED.match(text)
        if mark is None:
            return (
                f"{config} was not written by yoloslim (its first line does not say so), and "
                "this export would replace it"
            )
        if hashlib.sha256(text[mark.end() :].encode()).hexdigest() != mark.group(1):
            return f"{config} was edited since yoloslim wrote it, and this export would replace it"
    if repo.is_dir():
        versions = sorted(
            (p.name for p in repo.iterdir() if p.is_dir() and p.name.isdigit()), key=int
        )
        others = [v for v in versions if v != VERSION]
        if others:
            return (
                f"{repo} holds version folder(s) {', '.join(others)}: Triton serves the highest "
                f"version by default, so the {VERSION}/ this export writes would not be served"
            )
    return None


def _config(ctx: ExportContext) -> str:
    fits = [str(b) for b in _PREFERRED if b <= ctx.triton_max_batch]
    preferred = f"\n  preferred_batch_size: [ {', '.join(fits)} ]" if fits else ""
    return f"""name: "{ctx.triton_name}"
platform: "onnxruntime_onnx"
max_batch_size: {ctx.triton_max_batch}
input [
  {{
    name: "images"
    data_type: TYPE_FP32
    dims: [ 3, {ctx.imgsz}, {ctx.imgsz} ]
  }}
]
output [
  {{
    name: "preds"
    data_type: TYPE_FP32
    dims: [ {_num_anchors(ctx)}, {4 + len(ctx.names)} ]
  }}
]
dynamic_batching {{{preferred}
  max_queue_delay_microseconds: 2000
}}
instance_group [
  {{
    count: 1
    kind: KIND_AUTO
  }}
]
"""


def verify_triton(path: Path, ctx: ExportContext) -> dict:
    """Parse ``config.pbtxt`` back, check it against the ONNX's own inputs and outputs, and
    run the ONNX in ONNX Runtime at a batch of 2 (Triton's server is not needed for that)."""
    import onnx

    from yoloslim.export.verify import verify_artifact

    cfg = parse_config_pbtxt(path.read_text())
    model_path = path.parent / VERSION / "model.onnx"
    graph = onnx.load(model_path, load_external_data=False).graph

    def dims(value_info) -> list[int | str]:
        return [d.dim_value or d.dim_param for d in value_info.type.tensor_type.shape.dim]

    problems = []
    for kind, declared, actual in (
        ("input", cfg.get("input", []), graph.input),
        ("output", cfg.get("output", []), graph.output),
    ):
        if [d["name"] for d in declared] != [a.name for a in actual]:
            problems.append(f"{kind} names {[d['name'] for d in declared]}")
        for d, a in zip(declared, actual, strict=False):
            shape = dims(a)
            if isinstance(shape[0], int) or d["dims"] != shape[1:]:
                problems.append(f"{kind} {d['name']} dims {d['dims']} vs ONNX {shape}")
    if not cfg.get("max_batch_size") or "dynamic_batching" not in cfg:
        problems.append("max_batch_size / dynamic_batching missing")
    if problems:
        raise ExportError(f"{path}: config does not match {model_path}: {'; '.join(problems)}")
    report = verify_artifact(model_path, ctx.model, ctx.imgsz, batch=min(2, cfg["max_batch_size"]))
    report.update(path=str(path), config_checked=True, size_mb=path_size_mb(path))
    return report


def _num_anchors(ctx: ExportContext) -> int:
    return sum((ctx.imgsz // s) ** 2 for s in ctx.strides)


# protobuf text format's tokens: a quoted string (a # in it is no comment), a comment (# to
# the end of the line, dropped), punctuation, or a bare word (a name, a number, an enum)
_PBTXT_TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|[{}\[\]:,]|[^\s{}\[\]:,#"\']+'
)


def parse_config_pbtxt(text: str) -> dict:
    """A small reader for the subset of protobuf text format that :func:`export_triton`
    writes, and what a hand-edited copy adds to it: ``#`` comments, single-quoted strings."""
    tokens = [t for t in _PBTXT_TOKEN.findall(text) if not t.startswith("#")]
    pos = 0

    def value():
        nonlocal pos
        tok = tokens[pos]
        if tok == "{":
            pos += 1
            return block("}")
        if tok == "[":
            pos += 1
            items = []
            while tokens[pos] != "]":
                if tokens[pos] == ",":
                    pos += 1
                    continue
                items.append(value())
            pos += 1
            return items
        pos += 1
        if tok[0] in "\"'":
            return tok[1:-1]
        try:
            return int(tok)
        except ValueError:
            return tok

    def block(end):
        nonlocal pos
        out: dict = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            out[key] = value()
        pos += 1
        return out

    return block(None)
