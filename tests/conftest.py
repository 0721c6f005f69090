import os
from pathlib import Path

import pytest
import torch

# Two-core CI machines: keep torch from oversubscribing when pytest runs.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("ASTRO_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference data directory (../shared/data or $ASTRO_SHARED_DATA); skip when absent."""
    path = _shared_data()
    if not path.is_dir():
        pytest.skip(f"shared reference data not found at {path} (set ASTRO_SHARED_DATA)")
    return path
