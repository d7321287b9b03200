"""Putting a built site in place (harness.leaderboard.publish): one atomic swap, so `--out` always holds a complete
site, even when a build is killed with SIGKILL at any moment; the next build removes what killed builds left
behind (and only theirs), and recovers a site a killed build had moved aside."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.io import exchange_paths, process_start_time
from harness.leaderboard import SITE_MARKER, build_site
from harness.leaderboard import publish
from harness.leaderboard import site as site_module
from harness.leaderboard.synthetic import synthetic_records, write_records
from test_leaderboard import site_files

LINUX = sys.platform.startswith("linux")


@pytest.fixture
def records_dir(tmp_path) -> Path:
    root = tmp_path / "results"
    write_records(root, synthetic_records(2))
    return root


def _dead_pid() -> int:
    """The id of a process that has finished (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _debris(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".site."))


@pytest.mark.skipif(not LINUX, reason="renameat2 is Linux's")
def test_the_swap_is_one_atomic_exchange_on_linux(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert exchange_paths(a, b)
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"
    with pytest.raises(FileNotFoundError):
        exchange_paths(a, tmp_path / "missing")


def test_without_the_exchange_the_fallback_still_replaces_the_site(records_dir, tmp_path, monkeypatch):
    out = tmp_path / "site"
    build_site(records_dir, out)
    expected = site_files(out)
    monkeypatch.setattr(publish, "exchange_paths", lambda a, b: False)
    build_site(records_dir, out)
    assert site_files(out) == expected
    assert _debris(tmp_path) == []


def test_the_next_build_removes_what_killed_builds_left_and_only_that(records_dir, tmp_path):
    out = tmp_path / "site"
    build_site(records_dir, out)
    dead, me = _dead_pid(), os.getpid()
    start = process_start_time(me) or 0
    names = {
        f".site.building-{dead}-0-abcdefgh": False,  # killed while writing
        f".site.building-{dead}-{start}-zyxwvuts": False,
        f".site.old-{dead}-0-a1b2c3d4": False,  # killed in the fallback's swap, after the site was back
        f".site.building-{me}-{start}-livebld1": True,  # a build running now (this process)
        ".site.building-abcd1234": True,  # the older naming, recent: might be a live build of an older harness
        ".site.building-old12345": False,  # the older naming, over an hour old
        ".other.building-1-0-abcdefgh": True,  # another site's
    }
    if LINUX:  # this process's id with another start time: the id was reused, the builder is gone
        names[f".site.building-{me}-{start + 1}-reused12"] = False
    for name in names:
        (tmp_path / name / "index.html").parent.mkdir()
        (tmp_path / name / "index.html").write_text("half")
    an_hour_ago = time.time() - 3700
    os.utime(tmp_path / ".site.building-old12345", (an_hour_ago, an_hour_ago))
    build_site(records_dir, out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted(
        name for name, kept in names.items() if kept)


def test_a_build_killed_between_the_fallbacks_renames_is_recovered(records_dir, tmp_path, monkeypatch):
    """The fallback's window: the previous site moved aside, the new one not yet in. The next build puts the
    previous site back first, so even a build that then fails leaves it there."""
    out = tmp_path / "site"
    build_site(records_dir, out)
    previous = site_files(out)
    dead = _dead_pid()
    out.rename(tmp_path / f".site.old-{dead}-0-abcdefgh")
    (tmp_path / f".site.building-{dead}-0-ijklmnop").mkdir()  # the new site it was about to put in
    (tmp_path / f".site.building-{dead}-0-ijklmnop" / "index.html").write_text("new")

    def explode(staging, pages, site):
        raise OSError("disk full")

    monkeypatch.setattr(site_module, "_write_files", explode)
    with pytest.raises(OSError, match="disk full"):
        build_site(records_dir, out)
    assert site_files(out) == previous
    assert _debris(tmp_path) == []


def test_a_legacy_aside_folder_is_put_back_when_the_site_is_missing(records_dir, tmp_path):
    out = tmp_path / "site"
    build_site(records_dir, out)
    previous = site_files(out)
    out.rename(tmp_path / ".site.old-k3j4h5g6")  # what a build of an older harness, killed mid-swap, left
    assert publish.recover(out.resolve()) is not None
    assert site_files(out) == previous


KILLS = 12
# A build in a child process, as the CLI runs one: it says when it has imported everything (about a second here,
# most of a child's life), then builds.
CHILD = textwrap.dedent("""
    import sys, time
    from harness.leaderboard import build_site
    print("ready", flush=True)
    started = time.perf_counter()
    build_site(sys.argv[1], sys.argv[2])
    print("done", time.perf_counter() - started, flush=True)
""")


def _start_child(records: Path, out: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(records), str(out)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def test_kill_9_at_random_moments_always_leaves_a_complete_site_and_no_debris(tmp_path):
    """SIGKILL a build at random moments of its run, many times: after each, `--out` holds a complete site (the same
    bytes as a normal build's: the records do not change); a final normal build leaves nothing else beside it."""
    records = tmp_path / "results"
    write_records(records, synthetic_records(4))  # ~36 records: a build of about a quarter of a second here
    work = tmp_path / "work"
    out = work / "site"
    child = _start_child(records, out)
    line = child.stdout.readline().split()
    assert child.wait(timeout=120) == 0 and line[0] == "done"
    child.stdout.close()
    build_s = float(line[1])
    complete = site_files(out)
    assert "index.html" in complete and SITE_MARKER in complete
    rng = random.Random(20240501)
    killed_mid_build = debris_seen = 0
    for i in range(KILLS):
        child = _start_child(records, out)
        # half the kills anywhere in the build, half near its end, where the site is written and swapped in
        delay = rng.uniform(0, build_s) if i % 2 == 0 else rng.uniform(0.6 * build_s, 1.05 * build_s)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()
        child.wait(timeout=60)  # reaped: its PID is gone, as after a real kill
        child.stdout.close()
        killed_mid_build += "done" not in rest
        now = site_files(out)
        assert "index.html" in now and SITE_MARKER in now, f"kill {i} after {delay:.3f} s"
        assert now == complete, f"kill {i} after {delay:.3f} s left an incomplete site"
        debris_seen += bool(_debris(work))
    assert killed_mid_build >= KILLS // 2  # most kills hit a running build (the others came just after it ended)
    build_site(records, out)
    assert sorted(p.name for p in work.iterdir()) == ["site"], "debris of killed builds left beside the site"
    assert site_files(out) == complete
    print(f"{killed_mid_build}/{KILLS} kills mid-build, {debris_seen} left debris; build {build_s:.2f} s")
