"""pytest configuration of theria's Python tests.

Puts <repo>/python on sys.path (so `import theria` finds the package and the built
libtheria.so in build/), and skips tests marked `gpu` when no CUDA device is present.
Shared helpers (reference oracle, error metric, input makers) live in sdpa_testing.py.
"""
import sys
from pathlib import Path

import pytest
import torch

_REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_REPO / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import theria  # noqa: E402,F401  (fails collection early and loudly when the library is missing)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
