"""The user cache: converted models, trained judges (``$SAFELRM_CACHE``, else ~/.cache/safelrm)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("SAFELRM_CACHE") or Path.home() / ".cache" / "safelrm")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
