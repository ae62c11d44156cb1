"""Finds and loads libtheria, which registers torch.ops.theria.*."""
import os
from pathlib import Path

import torch

_CANDIDATES = (
    Path(__file__).resolve().parent / "libtheria.so",            # an installed package
    Path(__file__).resolve().parents[2] / "build" / "libtheria.so",  # the repository's build/
)


def load() -> Path:
    explicit = os.environ.get("THERIA_LIBRARY")
    candidates = (Path(explicit),) if explicit else _CANDIDATES
    for path in candidates:
        if path.is_file():
            torch.ops.load_library(str(path))
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise ImportError(
        f"theria: libtheria.so not found (tried {tried}); build it with scripts/setup.sh "
        "or point THERIA_LIBRARY at it"
    )
