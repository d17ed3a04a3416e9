"""TorchScript: traced and frozen, metadata in ``_extra_files``.

``torch.jit.optimize_for_inference`` rewrites convs into MKLDNN-prepacked ops that
do not survive ``torch.jit.save``/``load`` ("required keyword attribute 'value' is
undefined": the graph holds ``prim::ConstantMKLDNNTensor`` nodes, which have no
serialised form; checked with torch 2.13). So the file holds the frozen graph and
the runtime backend applies ``optimize_for_inference`` after loading; export
verification loads it that way, so the optimised variant is the one checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from yoloslim.errors import ExportError
from yoloslim.export.common import ExportContext, artifact_metadata
from yoloslim.fileio import staged

__all__ = ["export_torchscript"]


def export_torchscript(ctx: ExportContext) -> Path:
    """Write ``out/{stem}.torchscript`` (frozen trace, metadata in ``config.json``) and return it."""
    path = ctx.out / f"{ctx.stem}.torchscript"
    try:
        with torch.no_grad():
            traced = torch.jit.trace(ctx.model.eval(), ctx.example(), strict=False)
            frozen = torch.jit.freeze(traced)
        extra = {"config.json": json.dumps(artifact_metadata(ctx))}
        # saved under its own name in a private folder beside it (the archive's root folder
        # is named after the file), then moved into place whole
        with staged(path) as tmp:
            torch.jit.save(frozen, str(tmp), _extra_files=extra)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"TorchScript export to {path} failed: {type(e).__name__}: {e}") from e
    return path
