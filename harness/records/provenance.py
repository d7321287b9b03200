"""Provenance: what a record says about how its numbers were made, beyond the numbers themselves. The protocol's
version and parameters, where a submission's record lives, the code's commit and the machine's libraries.

The runner (which writes units) and the record writer (which assembles records, and looks up references' folders)
both need these; here they depend on neither.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.data.spec import DatasetSpec
from harness.protocol.decodings import DEFAULT as DEFAULT_DECODING, folder_name

PROTOCOL_VERSION = "1"
STANDARD_KS = (1, 5, 10, 30)
ALPHA = 0.05


def protocol_params(headline_k: int, head_fraction: float, decoding: str = DEFAULT_DECODING) -> dict[str, Any]:
    """Everything that defines how numbers are computed; part of every record."""
    return {
        "depth": headline_k,  # adapters rank this many items (the paper: 10 on simulations, 30 on real data)
        "decoding": decoding,  # how a generative model's list is read out (harness.protocol.decodings)
        "ks": [k for k in STANDARD_KS if k <= headline_k],
        "headline_k": headline_k,
        "head_fraction": head_fraction,
        "test": "paired-t",
        "alpha": ALPHA,
        "correction": "holm",
        "seed_aggregation": "mean",
    }


def results_folder(out_dir: Path, dataset: str, submission: str, decoding: str = DEFAULT_DECODING) -> Path:
    return out_dir / DatasetSpec.parse(dataset).slug / folder_name(submission, decoding)


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("numpy", "duckdb", "torch", "transformers", "deepspeed", "scipy"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    device = "cpu"
    if "torch" in sys.modules:  # never import torch just to describe the machine
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            device = f"cuda:{torch.cuda.get_device_name(0)}"
    env["device"] = device
    return env
