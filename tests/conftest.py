"""Shared fixtures: the real datasets beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("LABELASSIST_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets() -> Path:
    """Folder of the real labelled sets (``../shared/datasets``); a missing folder is an error."""
    if not (DATASETS / "scratch_assay" / "images").is_dir():
        raise RuntimeError(
            f"the test datasets are missing at {DATASETS}; set LABELASSIST_DATASETS or put shared/ beside the repo"
        )
    return DATASETS
