"""kill -9 at random points of a run: what it had finished survives, nothing it was writing stays behind after the
next run, and no record that is there ever states numbers its files do not give back.

The record folder is replaced in one atomic step (docs/result-format.md, "Writing a folder atomically"), so after
every kill it holds a complete record, the previous one or the new one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.evaluation.verify import verify_record_folder
from test_runner import make_submission

REPO = Path(__file__).resolve().parents[1]

SLOW_POP = """
import time
import numpy as np
from harness.protocol.adapter import Adapter

class TestAdapter(Adapter):
    def fit(self, train):
        time.sleep(0.4)  # a unit worth interrupting
        counts = train.catalogue.popularity("rec")
        noise = np.random.default_rng(self.seed).random(len(counts))
        self.order = np.argsort(-(counts + noise), kind="stable")

    def retrieve(self, task, requests, k):
        return np.broadcast_to(self.order[:k], (len(requests), k))
"""


def _debris(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith((".tmp", ".staged", ".wal")))


@pytest.mark.slow
def test_kill_9_during_runs_always_leaves_a_complete_record_and_no_debris_after_the_next_run(tmp_path):
    build_dataset("sim1")
    folder = make_submission(tmp_path / "subs", "slow", SLOW_POP, seeds=(0, 1, 2, 3, 4, 5))
    out = tmp_path / "out"
    record_folder = out / "sim1" / "slow"
    assert main(["run", str(folder), "--out", str(out), "--no-progress", "--no-site", "--seeds", "0", "1"]) == 0
    assert verify_record_folder(record_folder).ok
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(6):
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", str(folder), "--out", str(out), "--no-progress", "--no-site"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        time.sleep(rng.uniform(1.0, 4.0))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        assert verify_record_folder(record_folder).ok, attempt  # the previous complete record, or the new one
    assert main(["run", str(folder), "--out", str(out), "--no-progress", "--no-site"]) == 0
    assert verify_record_folder(record_folder).ok
    assert _debris(out) == []
    units = sorted(p.name for p in (record_folder / "units").iterdir())
    assert units == [f"seed{s}" for s in range(6)]
