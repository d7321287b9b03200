"""Where the compile's time goes, and the least any implementation of the compiled format can take (issue 18).

    PYTHONPATH=. python bench/compile_floor.py [--rounds N] [SCALE]      # SCALE 1.0 = 25M rows (default), 0.1

On the synthetic ML-25M-sized log of bench/bench_data.py (same input files), in one run:

1. the two end-to-end commands side by side (alternating, fresh processes, best of N): `python -m harness data
   build logs` and the pandas reference (bench/pandas_compile.py), with the harness's per-stage CPU seconds
   ($HARNESS_DATA_TIMINGS);
2. the floor: the steps no implementation of this protocol *and this file format* can skip, each done the
   fastest way we know, each measured on its own:
   - start-up: a fresh Python importing duckdb, numpy and pyarrow (what writes a DuckDB file from Arrow);
   - read: the four Parquet files into Arrow (pyarrow; polars reads at the same speed);
   - sort: the one sort of the interactions, best case: a single packed uint64 key (user, timestamp) argsorted
     by numpy, plus gathering the columns (the real key has four columns; this ignores the tie-breaks);
   - store: writing the two big tables the format holds, `sequences` and `rec_examples`, into a DuckDB file from
     Arrow (the compile's own output rows) and checkpointing, each table on its own;
   - hash: the format's fingerprint over each of those tables (harness.data.fingerprint.table_digests: read back,
     key order checked, SHA-256, which this CPU runs with SHA-NI at about 1 GB/s);
   and the same floor without `rec_examples`, whose training rows are derivable from users.length: what a
   format that stopped storing them would still have to pay;
3. the sort three ways on the real four-column key (user, timestamp, seq, item): DuckDB ORDER BY, polars sort,
   numpy lexsort: which tool wins for the compile's one sort.

The floor is a sum of best cases, so no implementation writing this format can be faster than it; if the floor
is above a third of the pandas reference, "3x faster than pandas" needs another format, not better code.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import logs_folder, measure, run_pandas  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


class Step:
    def __init__(self, name: str, results: dict) -> None:
        self.name, self.results = name, results

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu()

    def __exit__(self, *exc):
        wall, cpu = time.perf_counter() - self.wall, _cpu() - self.cpu
        best = self.results.get(self.name)
        if best is None or cpu < best[1]:
            self.results[self.name] = (wall, cpu)


def harness_with_stages(folder: Path, work: Path) -> dict:
    """`python -m harness data build logs` end to end, with the CPU seconds of each stage from its timings."""
    cache = work / "harness-cache"
    err = tempfile.TemporaryFile()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "data", "build", "logs", "--path", str(folder),
                             "--cache-dir", str(cache), "--force"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=err, env={**os.environ, "HARNESS_DATA_TIMINGS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err.seek(0)
    text = err.read().decode()
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(text[-3000:])
    stages, before = {}, 0.0
    for line in text.splitlines():  # "[compile] STAGE: W s wall, process CPU so far C s"
        if line.startswith("[compile] "):
            name, rest = line[len("[compile] "):].split(": ", 1)
            so_far = float(rest.split("process CPU so far ", 1)[1].split()[0])
            stages[name.lstrip("_").removeprefix("stage_")] = so_far - before
            before = so_far
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024,
            "stages": stages, "file": cache / "datasets" / "logs.duckdb"}


def floor(folder: Path, compiled: Path, work: Path, rounds: int) -> dict:
    import duckdb
    import numpy as np
    import polars as pl
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from harness.data.fingerprint import table_digests

    steps: dict[str, tuple[float, float]] = {}
    start = min((measure([sys.executable, "-c", "import duckdb, numpy, pyarrow, pyarrow.parquet"])
                 for _ in range(rounds)), key=lambda r: r["cpu_s"])
    steps["start-up (import duckdb, numpy, pyarrow)"] = (start["wall_s"], start["cpu_s"])
    src = duckdb.connect(str(compiled), read_only=True)
    sequences = src.sql("SELECT user_id, pos, item_id, ts FROM sequences").to_arrow_table()
    rec_examples = src.sql("SELECT split, user_id, target_pos FROM rec_examples").to_arrow_table()
    src.close()
    rec_examples_dict = rec_examples.set_column(0, "split", pc.dictionary_encode(rec_examples.column("split")))
    for _ in range(rounds):
        with Step("read the Parquet files (pyarrow)", steps):
            inter = pq.read_table(folder / "interactions.parquet", columns=["user_id", "item_id", "timestamp"])
            for name in ("items", "queries", "qrels"):
                if (folder / f"{name}.parquet").exists():
                    pq.read_table(folder / f"{name}.parquet")
        user, item, ts = (inter.column(c).to_numpy() for c in ("user_id", "item_id", "timestamp"))
        with Step("sort, best case (numpy argsort of one packed uint64 key, gather)", steps):
            key = (user.astype(np.uint64) << np.uint64(32)) | (ts - ts.min()).astype(np.uint64)
            order = np.argsort(key)
            user[order], item[order], ts[order]
        path = work / "floor.duckdb"
        path.unlink(missing_ok=True)
        con = duckdb.connect(str(path), config={"preserve_insertion_order": True})
        for table in ("sequences", "rec_examples"):
            with Step(f"store {table} (DuckDB from Arrow, checkpoint)", steps):
                if table == "sequences":
                    con.execute("CREATE TABLE sequences AS SELECT * FROM sequences")
                else:  # split dictionary-encoded on the Arrow side: the cheapest way in we found (not plain strings)
                    con.execute("CREATE TABLE rec_examples (split VARCHAR, user_id INTEGER, target_pos INTEGER)")
                    con.execute("INSERT INTO rec_examples SELECT * FROM rec_examples_dict")
                con.execute("CHECKPOINT")
        for table in ("sequences", "rec_examples"):
            with Step(f"fingerprint {table} (read back, key order check, SHA-256)", steps):
                table_digests(con, table)
        con.close()
    sorts: dict[str, tuple[float, float]] = {}
    frame = inter.append_column("seq", inter.column("timestamp"))  # a fourth key column of the same width
    for _ in range(rounds):
        with Step("DuckDB ORDER BY user, ts, seq, item (to Arrow)", sorts):
            con = duckdb.connect(config={"preserve_insertion_order": True})
            con.sql("SELECT * FROM frame ORDER BY user_id, timestamp, seq, item_id").to_arrow_table()
            con.close()
        with Step("polars sort by user, ts, seq, item", sorts):
            pl.from_arrow(frame).sort(["user_id", "timestamp", "seq", "item_id"])
        with Step("numpy lexsort of user, ts, seq, item (gather)", sorts):
            o = np.lexsort((item, ts, ts, user))
            user[o], item[o], ts[o]
    return {"floor": steps, "sorts": sorts}


def main(argv: list[str]) -> None:
    rounds = 3
    if "--rounds" in argv:
        i = argv.index("--rounds")
        rounds = int(argv[i + 1])
        del argv[i:i + 2]
    scale = float(argv[0]) if argv else 1.0
    folder = logs_folder(scale)
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        work = Path(tmp)
        runs = {"harness": [], "pandas": []}
        for i in range(rounds):
            for side in (("pandas", "harness") if i % 2 == 0 else ("harness", "pandas")):
                r = harness_with_stages(folder, work) if side == "harness" else run_pandas(folder, work)
                runs[side].append(r)
                print(f"  {side:8s} {r['wall_s']:7.2f} s wall {r['cpu_s']:7.2f} CPU-s {r['peak_rss_mib']:6.0f} MiB"
                      f"  (load {os.getloadavg()[0]:.1f})", flush=True)
        best = {s: min(rs, key=lambda r: r["cpu_s"]) for s, rs in runs.items()}
        h, p = best["harness"], best["pandas"]
        print(f"\nscale {scale:g}, best of {rounds} by CPU")
        print("| | wall s | CPU s | peak RSS MiB |\n|---|---|---|---|")
        for s in ("pandas", "harness"):
            print(f"| {s} | {best[s]['wall_s']:.2f} | {best[s]['cpu_s']:.2f} | {best[s]['peak_rss_mib']:.0f} |")
        print(f"| pandas / harness | {p['wall_s'] / h['wall_s']:.2f}x | {p['cpu_s'] / h['cpu_s']:.2f}x | |")
        print(f"| a third of pandas (the 3x target) | {p['wall_s'] / 3:.2f} | {p['cpu_s'] / 3:.2f} | |")
        print("\nharness stages (CPU s, from its best run):")
        print("| stage | CPU s |\n|---|---|")
        for name, cpu in h["stages"].items():
            print(f"| {name} | {cpu:.2f} |")
        print(f"| (after the last stage: exit, writes) | {h['cpu_s'] - sum(h['stages'].values()):.2f} |")
        found = floor(folder, h["file"], work, rounds)
        print("\nthe floor of this format (each step's best of the rounds):")
        print("| step | wall s | CPU s |\n|---|---|---|")
        for name, (wall, cpu) in found["floor"].items():
            print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
        wall, cpu = (sum(v[i] for v in found["floor"].values()) for i in (0, 1))
        print(f"| **floor (sum)** | **{wall:.2f}** | **{cpu:.2f}** |")
        print(f"| pandas / floor: the best ratio this format allows | {p['wall_s'] / wall:.2f}x | "
              f"{p['cpu_s'] / cpu:.2f}x |")
        derived = {k: v for k, v in found["floor"].items() if "rec_examples" not in k}
        wall2, cpu2 = (sum(v[i] for v in derived.values()) for i in (0, 1))
        print(f"| floor without storing or hashing rec_examples (a format that derives the training rows) | "
              f"{wall2:.2f} | {cpu2:.2f} |")
        print(f"| pandas / that floor | {p['wall_s'] / wall2:.2f}x | {p['cpu_s'] / cpu2:.2f}x |")
        print("\nthe one sort on its four-column key, three tools:")
        print("| tool | wall s | CPU s |\n|---|---|---|")
        for name, (wall, cpu) in found["sorts"].items():
            print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
