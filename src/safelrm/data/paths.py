"""Where upstream data lives: ``$SAFELRM_DATA``, else ``../shared/data`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

from safelrm.errors import SafelrmError

_REPO_ROOT = Path(__file__).resolve().parents[3]


def data_root(required: bool = True) -> Path | None:
    """The folder of upstream evaluation sets (its ``train/`` folder holds training sets)."""
    env = os.environ.get("SAFELRM_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / ".." / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if required:
        raise SafelrmError(
            "no data folder: set SAFELRM_DATA or place the shared data at ../shared/data"
        )
    return None
