"""The CI gate against quality regressions (`python -m harness gate`) and speed regressions
(`python -m harness.gate.speed`). See docs/gate.md."""

from harness.gate.baseline import RecordFolder, check_comparable, open_baseline, open_record_folder, write_baseline
from harness.gate.compare import GateReport, GateRow, run_gate
from harness.gate.profiles import PROFILES, Profile, get_profile

__all__ = [
    "PROFILES",
    "GateReport",
    "GateRow",
    "Profile",
    "RecordFolder",
    "check_comparable",
    "get_profile",
    "open_baseline",
    "open_record_folder",
    "run_gate",
    "write_baseline",
]
