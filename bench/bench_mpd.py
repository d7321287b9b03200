"""MPD slice parsing speed: MB of slice JSON per CPU-second through the `mpd` source (docs/mpd.md).

    python -m pytest bench/bench_mpd.py --benchmark-only      # pytest-benchmark table + extra_info
    PYTHONPATH=. python bench/bench_mpd.py [N_SLICES]         # printed (default 8 slices)

HARNESS_BENCH_MPD_SLICES sets the pytest run's slice count (default 8, about 257 MB; generating them
takes about 2 CPU-seconds a slice); HARNESS_BENCH_MPD_DIR keeps the printed run's slices in that folder
for the next run (default: a temporary folder, removed).

The slices are synthetic but shaped like the real ones: 1,000 playlists of 5 to ~250 tracks (66 on
average), every key of the real format (album and artist URIs, durations, `num_*` counts, a few
descriptions), pretty-printed with a 4-space indent like the MPD's own files (about 33 MB each), some
text `\\u`-escaped, tracks drawn with a heavy head from a catalogue growing with the slice count (the real
MPD: 66M track entries, 2.26M distinct tracks). They are generated once into a temporary folder, not timed.

Each load runs MPDSource.load in a fresh subprocess (a DuckDB connection with the compiler's settings),
which reports its CPU seconds (all threads: time.process_time), wall seconds and peak RSS; the rate is
the slices' JSON bytes over those CPU seconds. CPU time, not wall time, because the project's machines
are shared with training jobs. The full MPD is 1,000 such slices (about 33 GB): its extrapolated CPU
time is printed and recorded in extra_info.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLAYLISTS_PER_SLICE = 1000
FULL_MPD_SLICES = 1000
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_WORDS = ("love", "night", "summer", "road", "fire", "dream", "heart", "city", "blue", "gold", "wild", "rain",
          "dance", "home", "light", "river", "Låt", "Gå", "corazón", "für", "ночь", "夜", "Beyoncé", "Ünder")
_TITLES = ("Throwbacks", "chill", "Workout", "country", "Road Trip", "party", "rap", "Summer 2017", "oldies",
           "Chill Vibes", "gym", "worship", "sleep", "rock", "jams", "Christmas", "feels", "lit", "study", "💯")


def _uri(kind: str, n: int) -> str:
    digits = []
    for _ in range(22):
        n, r = divmod(n * 2654435761 + 40503, len(_ALPHABET))
        digits.append(_ALPHABET[r])
    return f"spotify:{kind}:" + "".join(digits)


def _words(rng: random.Random, k: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(k)).capitalize()


def _track(number: int) -> dict:
    """Track `number` of the catalogue, the same every time it is drawn."""
    t = random.Random(number)
    artist = number // 7
    return {
        "artist_name": _words(t, t.randint(1, 3)) + f" {artist}",
        "track_uri": _uri("track", number),
        "artist_uri": _uri("artist", artist),
        "track_name": _words(t, t.randint(1, 5)) + (f" (feat. {_words(t, 1)})" if t.random() < 0.1 else ""),
        "album_uri": _uri("album", number // 12),
        "duration_ms": t.randint(90_000, 400_000),
        "album_name": _words(t, t.randint(1, 4)),
    }


def slice_document(index: int, catalogue: int, strip: tuple[str, ...] = ()) -> dict:
    """Slice `index` (pids index*1000 ...) drawing tracks from `catalogue` tracks with a heavy head.
    `strip` removes keys from every playlist or track (e.g. ("pos", "modified_at") for a public subset)."""
    rng = random.Random(index)
    playlists = []
    for j in range(PLAYLISTS_PER_SLICE):
        pid = index * PLAYLISTS_PER_SLICE + j
        n = min(250, max(5, int(rng.lognormvariate(3.9, 0.75))))
        tracks = []
        for pos in range(n):
            track = _track(int(catalogue * rng.random() ** 2.5))
            tracks.append({"pos": pos, **track})
        playlist = {
            "name": rng.choice(_TITLES) + ("" if rng.random() < 0.7 else f" {_words(rng, 1)}"),
            "collaborative": "false",
            "pid": pid,
            "modified_at": 1_400_000_000 + rng.randint(0, 110_000_000),
            "num_tracks": n,
            "num_albums": n - n // 5,
            "num_followers": rng.randint(1, 40),
            "tracks": tracks,
            "num_edits": rng.randint(1, 60),
            "duration_ms": sum(t["duration_ms"] for t in tracks),
            "num_artists": n - n // 4,
        }
        if rng.random() < 0.02:
            playlist["description"] = _words(rng, 6)
        for key in strip:
            playlist.pop(key, None)
            for track in tracks:
                track.pop(key, None)
        playlists.append(playlist)
    start = index * PLAYLISTS_PER_SLICE
    info = {"generated_on": "2017-12-03 08:41:42.057563", "slice": f"{start}-{start + PLAYLISTS_PER_SLICE - 1}",
            "version": "v1"}
    return {"info": info, "playlists": playlists}


def generate(folder: Path, n_slices: int, strip: tuple[str, ...] = ()) -> Path:
    """Write n_slices slice files into `folder` (kept when already there): half \\u-escaped, half raw UTF-8."""
    folder.mkdir(parents=True, exist_ok=True)
    catalogue = 40_000 * n_slices
    for i in range(n_slices):
        path = folder / f"mpd.slice.{i * PLAYLISTS_PER_SLICE}-{(i + 1) * PLAYLISTS_PER_SLICE - 1}.json"
        if path.exists():
            continue
        text = json.dumps(slice_document(i, catalogue, strip), indent=4, ensure_ascii=i % 2 == 0)
        tmp = path.with_suffix(".partial")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return folder


CHILD = """
import json, resource, sys, time
from pathlib import Path
import duckdb
from harness.data.compile import duckdb_config
from harness.data.sources.base import SourceContext
from harness.data.sources.mpd import MPD
folder = Path({folder!r})
con = duckdb.connect(config=duckdb_config({spill!r}))
started, cpu = time.perf_counter(), time.process_time()
result = MPD.load(con, SourceContext(data_dir=folder, params={{}}, path=folder))
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
counts = {{t: con.execute(f"SELECT count(*) FROM {{t}}").fetchone()[0]
          for t in ("raw_items", "raw_interactions", "raw_queries", "raw_qrels")}}
print(json.dumps({{"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "counts": counts, "notes": result.notes}}))
"""


def load_in_subprocess(folder: Path) -> dict:
    """MPD.load on `folder` in a fresh process; adds the JSON size and the rate in MB per CPU-second."""
    with tempfile.TemporaryDirectory(prefix="bench-mpd-spill-") as spill:
        script = CHILD.format(folder=str(folder), spill=spill)
        proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    files = sorted(folder.glob("mpd.slice.*.json"))
    out["slices"] = len(files)
    out["json_mb"] = sum(f.stat().st_size for f in files) / 1e6
    out["mb_per_cpu_s"] = out["json_mb"] / out["cpu_s"]
    full_cpu_s = FULL_MPD_SLICES / len(files) * out["cpu_s"]
    out["full_mpd_cpu_min"] = full_cpu_s / 60
    return out


def describe(r: dict) -> str:
    return (f"{r['slices']} slices, {r['json_mb']:.0f} MB JSON: {r['cpu_s']:.1f} CPU-s ({r['wall_s']:.1f} s wall, "
            f"load average {os.getloadavg()[0]:.1f}), {r['mb_per_cpu_s']:.0f} MB/CPU-s, peak RSS "
            f"{r['peak_rss_mib']:.0f} MiB; the full MPD (1,000 slices) ~{r['full_mpd_cpu_min']:.1f} CPU-min")


@pytest.fixture(scope="module")
def slice_dir():
    with tempfile.TemporaryDirectory(prefix="bench-mpd-") as folder:
        yield generate(Path(folder) / "data", int(os.environ.get("HARNESS_BENCH_MPD_SLICES") or 8))


def test_mpd_parse_rate(benchmark, slice_dir):
    results = []

    def once():
        results.append(load_in_subprocess(slice_dir))

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update(results[-1])
    print(f"\nmpd: {describe(results[-1])}")


def main(argv: list[str]) -> None:
    n_slices = int(argv[0]) if argv else 8
    keep = os.environ.get("HARNESS_BENCH_MPD_DIR")
    with tempfile.TemporaryDirectory(prefix="bench-mpd-") as scratch:
        folder = Path(keep or scratch) / "data"
        t0 = time.perf_counter()
        generate(folder, n_slices)
        print(f"{n_slices} slices in {folder}: generated in {time.perf_counter() - t0:.1f} s (not timed)", flush=True)
        print(describe(load_in_subprocess(folder)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
