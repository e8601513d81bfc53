"""Shared figure checks for the plotting and study tests."""

from __future__ import annotations

import os
from pathlib import Path


def assert_png(path: str | Path) -> None:
    """A readable, non-trivial, non-blank PNG."""
    import matplotlib.image

    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n", path
    assert os.path.getsize(path) > 10_000, path
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] >= 200 and img.shape[1] >= 400, (path, img.shape)
    rgb = img[..., :3]
    assert rgb.var() > 1e-3, path
    assert (rgb.min(axis=-1) < 0.9).mean() > 0.02, f"{path}: almost all white"
