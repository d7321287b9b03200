"""Nothing left behind by a killed compile (harness.data.scratch): a compile killed with SIGKILL at any point leaves
the previous compiled file intact and verifying; the next compile into the folder removes what it left (the
temporary DuckDB file, its WAL, the scratch folder with DuckDB's spill files), never a live compile's."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from harness.io import process_start_time
from harness.data import scratch
from harness.data.compile import compile_dataset
from harness.data.integrity import verify_file
from test_data_compile import GeneratedSource

REPO = Path(__file__).resolve().parents[1]

# 300k interactions with a 20 MB memory limit: about 0.6 s of compile, spilling to the scratch folder.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_data_compile import GeneratedSource
    from harness.data.compile import compile_dataset
    print("ready", flush=True)
    compile_dataset("generated", source=GeneratedSource(), dest=Path({dest!r}), force=True)
    print("done", flush=True)
    """
)


def debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "generated.duckdb")


def spilling(folder: Path) -> bool:
    """Whether a scratch folder holds DuckDB spill files (folders may vanish meanwhile: a compile cleans up)."""
    try:
        return any(f.name.startswith("duckdb_temp") for d in folder.glob(".*.scratch") for f in d.iterdir())
    except OSError:
        return False


def kill_compile_after(dest: Path, delay: float, when=None) -> bool:
    """Start a compile into `dest` in a subprocess, SIGKILL it `delay` s after its imports (or once `when(folder)`
    holds); whether it finished first."""
    env = {**os.environ, "HARNESS_DUCKDB_MEMORY": "20MB", "HARNESS_DUCKDB_THREADS": "2"}
    script = CHILD.format(tests=str(Path(__file__).parent), dest=str(dest))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        deadline = time.time() + 60
        while when is not None and not when(dest.parent) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stdout.close()
    return proc.returncode == 0


def test_sigkill_at_random_points_leaves_the_previous_file_and_the_next_compile_cleans_up(tmp_path):
    folder = tmp_path / "datasets"
    dest = folder / "generated.duckdb"
    good = compile_dataset("generated", source=GeneratedSource(), dest=dest)
    rng = random.Random(20240607)
    delays = [0.05, 0.2, 0.35, 0.5] + [rng.uniform(0.0, 0.8) for _ in range(3)]
    left_behind = set()
    for delay, when in [(d, None) for d in delays] + [(0.0, spilling)]:  # the last: once DuckDB spills
        kill_compile_after(dest, delay, when)
        manifest, verified = verify_file(dest, full=True)  # the previous file: intact, same fingerprint
        assert verified.fingerprint == good.fingerprint == manifest["fingerprint"]
        left_behind.update(debris(folder))
    # what killed compiles leave: the new file (and its WAL) and the scratch folder DuckDB spilled into
    assert any(name.endswith(".tmp") for name in left_behind), left_behind
    assert spilling(folder), left_behind

    again = compile_dataset("generated", source=GeneratedSource(), dest=dest, force=True)
    assert again.fingerprint == good.fingerprint
    assert debris(folder) == []


def test_a_live_compiles_files_are_kept(tmp_path):
    folder = tmp_path / "datasets"
    folder.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        start = process_start_time(live.pid) or 0
        host = scratch._HOST
        kept = [f".x.duckdb.compile-{host}-{live.pid}-{start}-ab12cd34.tmp",
                f".x.duckdb.compile-{host}-{live.pid}-{start}-ab12cd34.scratch",
                f".x.duckdb.compile-otherhost-{dead.pid}-1-ab12cd34.tmp",  # another machine's: not ours to judge
                "notes.txt", "x.duckdb"]
        gone = [f".x.duckdb.compile-{host}-{dead.pid}-{start}-ab12cd34.tmp",
                f".x.duckdb.compile-{host}-{dead.pid}-{start}-ab12cd34.tmp.wal",
                f".x.duckdb.compile-{host}-{dead.pid}-{start}-ab12cd34.scratch"]
        if start:  # a PID reused by another process: started at another time, so the file is debris
            gone.append(f".x.duckdb.compile-{host}-{live.pid}-{start + 1}-ab12cd34.tmp")
        for name in kept + gone:
            if name.endswith(".scratch"):
                (folder / name).mkdir()
                (folder / name / "duckdb_temp_storage-0.tmp").write_bytes(b"spill")
            else:
                (folder / name).write_bytes(b"x")
        legacy_old, legacy_new = folder / "harness-duckdb-abc123", folder / ".y.duckdb.k3j4h5g6.tmp"
        legacy_old.mkdir()
        legacy_new.write_bytes(b"x")
        os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
        removed = scratch.remove_debris(folder)
        assert sorted(p.name for p in removed) == sorted(gone + [legacy_old.name])
        assert sorted(p.name for p in folder.iterdir()) == sorted(kept + [legacy_new.name])
    finally:
        live.kill()
        live.wait()
