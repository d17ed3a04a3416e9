"""yoloslim (public API assembled once all packages land)."""
