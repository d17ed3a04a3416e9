"""Compression stages. Each returns a :class:`yoloslim.result.Result` and never mutates its input."""

from yoloslim.compress.reparam import fuse_traced_conv_bn, reparameterize

__all__ = ["fuse_traced_conv_bn", "reparameterize"]
