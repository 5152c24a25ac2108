from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PED2 = REPO.parent / "shared" / "datasets" / "ucsd_ped2"


@pytest.fixture(scope="session")
def ped2() -> Path:
    if not (PED2 / "labels.json").is_file():
        pytest.fail(f"UCSD Ped2 not found at {PED2}: the tests read the benchmark from ../shared")
    return PED2


@pytest.fixture(scope="session")
def ped2_labels(ped2) -> dict:
    return json.loads((ped2 / "labels.json").read_text())["clips"]
