import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def small_overrides() -> list[str]:
    """Llama 3 8B on 16 H100s, TP2 PP4 DP2: small enough to simulate in well under a second."""
    return [
        'model.name="llama3-8b"', "cluster.gpus=16", "parallel.tp=2", "parallel.pp=4", "parallel.dp=2",
        "parallel.first_stage_layers=-1", "parallel.last_stage_layers=-1", "training.global_batch=16",
        "training.seq_len=2048", "parallel.vp=1", 'schedule.name="1f1b"',
    ]
