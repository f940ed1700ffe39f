"""Shared test fixtures. Real audio is read from CANTOR_DEMO_DATA (default ../shared/data/
gtsinger_demo beside the project); tests needing it skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import utils.offline  # noqa: F401  first: usage reports off, as in every entry point

import pytest
import torch

# Tiny test models run many times faster on one thread than on two competing ones.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = Path(os.environ.get("CANTOR_DEMO_DATA", ROOT.parent / "shared" / "data" / "gtsinger_demo"))


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """Folder of the GTSinger demo subset (singer/song/take.flac)."""
    if not (DEMO_DATA / "manifest.tsv").is_file():
        pytest.skip(f"demo data not found at {DEMO_DATA} (set CANTOR_DEMO_DATA)")
    return DEMO_DATA
