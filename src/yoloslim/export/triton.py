"""Triton Inference Server model repository: ``MODEL/1/model.onnx`` + ``config.pbtxt``."""

from __future__ import annotations

import re
from pathlib import Path

from yoloslim.export.common import ExportContext

__all__ = ["export_triton", "parse_config_pbtxt", "TRITON_MAX_BATCH"]

TRITON_MAX_BATCH = 16


def export_triton(ctx: ExportContext, path: Path | None = None) -> Path:
    """Write the repository under ``ctx.out / "triton"``; returns the ``config.pbtxt`` path."""
    import dataclasses

    from yoloslim.export.onnx import export_onnx

    name = ctx.stem
    repo = ctx.out / "triton" / name
    (repo / "1").mkdir(parents=True, exist_ok=True)
    dyn = dataclasses.replace(
        ctx, dynamic=True
    )  # Triton batches requests: the batch axis is dynamic
    export_onnx(dyn, repo / "1" / "model.onnx")
    n = len(ctx.names)
    from yoloslim.models.head import make_anchors

    anchors = len(
        make_anchors([(ctx.imgsz // s, ctx.imgsz // s) for s in ctx.strides], list(ctx.strides))[0]
    )
    config = f"""name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {TRITON_MAX_BATCH}
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
    dims: [ {anchors}, {4 + n} ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 2000
}}
instance_group [
  {{
    count: 1
    kind: KIND_CPU
  }}
]
"""
    cfg = repo / "config.pbtxt"
    cfg.write_text(config)
    return cfg


def parse_config_pbtxt(text: str) -> dict:
    """A small reader for the subset of protobuf text format that :func:`export_triton` writes."""
    tokens = re.findall(r'"[^"]*"|[{}\[\]:,]|[^\s{}\[\]:,]+', text)
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
        if tok.startswith('"'):
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
