"""TorchScript: traced and frozen, metadata in ``_extra_files``.

``torch.jit.optimize_for_inference`` rewrites convs into MKLDNN-prepacked ops that
do not survive ``torch.jit.save``/``load`` ("required keyword attribute 'value' is
undefined": the graph holds ``prim::ConstantMKLDNNTensor`` nodes, which have no
serialised form; checked with torch 2.13). So the file holds the frozen graph and
the runtime backend applies ``optimize_for_inference`` after loading; export
verification loads it that way, so the optimised variant is the one checked.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from yoloslim.errors import ExportError, YoloslimError
from yoloslim.export.common import ExportContext, artifact_metadata
from yoloslim.fileio import staged

__all__ = ["export_torchscript", "torchscript_path"]


def torchscript_path(ctx: ExportContext) -> Path:
    """Where :func:`export_torchscript` writes: ``out/{stem}.torchscript``."""
    return ctx.out / f"{ctx.stem}.torchscript"


def export_torchscript(ctx: ExportContext) -> Path:
    """Write ``out/{stem}.torchscript`` (frozen trace, metadata in ``config.json``) and return it."""
    path = torchscript_path(ctx)
    try:
        with torch.no_grad():
            traced = torch.jit.trace(ctx.model.eval(), ctx.example(), strict=False)
            frozen = torch.jit.freeze(traced)
        extra = {"config.json": json.dumps(artifact_metadata(ctx))}
        # serialised in memory: torch's own file writer aborts the process when a write is
        # refused (a full disk: a C++ exception in a destructor), Python's raises OSError
        archive = io.BytesIO()
        torch.jit.save(frozen, archive, _extra_files=extra)
        # written in a private folder beside it, then moved into place whole
        with staged(path, check=ctx.check) as tmp:
            tmp.write_bytes(archive.getbuffer())
    except YoloslimError:  # a folder in the way, a failed check: they name the file
        raise
    except OSError as e:  # the machine refused the file: named as the user knows it
        raise ExportError(f"TorchScript export to {path} failed: {e.strerror or e}") from e
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"TorchScript export to {path} failed: {type(e).__name__}: {e}") from e
    return path
