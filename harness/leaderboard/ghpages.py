"""Publish the leaderboard to a git branch for static hosting (GitHub Pages or any host that serves a branch).

    publish_site(records, repo=".", branch="gh-pages", remote="origin", push=False, message=None, strict=False)
        -> Published

The site is built from `records` (one folder or several, as for `build_site`) into a temporary folder, then
committed as the whole content of `branch` in the git working tree `repo` by ghp-import (its Python API, which
writes the commit with `git fast-import`; nothing here builds commits by hand), with a `.nojekyll` file so that
GitHub Pages serves the files as they are. The branch's earlier commits are kept: each publish is one more commit.

ghp-import works on the repository of the current directory, so it runs with `repo` as the current directory
(restored afterwards). Before committing it moves the local branch to `REMOTE/BRANCH` when that ref is known; a
shallow single-branch checkout (as CI's) does not know it, so with `push` the remote branch is fetched first: the
new commit then follows the published history and the push is a fast-forward.

Nothing is committed when the folder holds no record, or, with `strict`, when a record or experiment summary
was skipped: NotPublished says why and carries the build report.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import ghp_import

from harness.errors import HarnessError
from harness.leaderboard.site import BuildReport, build_site

DEFAULT_BRANCH = "gh-pages"
DEFAULT_REMOTE = "origin"


class NotPublished(HarnessError):
    """The site was built but not committed (no record, or skipped ones with `strict`)."""

    def __init__(self, message: str, report: BuildReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Published:
    branch: str
    commit: str  # the new commit on `branch`
    records: int
    source: str | None  # `git rev-parse HEAD` of the repository, None when it has no commit
    message: str
    pushed_to: str | None  # the remote, when pushed
    report: BuildReport

    def lines(self) -> list[str]:
        pushed = f", pushed to {self.pushed_to}" if self.pushed_to else " (not pushed: add --push)"
        plural = "" if self.records == 1 else "s"
        skipped = len(self.report.skipped)
        return [f"published {self.records} record{plural} ({skipped} skipped) to branch {self.branch} "
                f"at commit {self.commit}{pushed}"]


def publish_site(records: str | Path | Sequence[str | Path], repo: str | Path = ".", *, branch: str = DEFAULT_BRANCH,
                 remote: str = DEFAULT_REMOTE, push: bool = False, message: str | None = None,
                 strict: bool = False) -> Published:
    """Build the site from `records` and commit it to `branch` of `repo` (then push it to `remote` if `push`)."""
    roots = [Path(records)] if isinstance(records, (str, Path)) else [Path(r) for r in records]
    repo = Path(repo)
    top = _work_tree(repo)
    source = _git(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    named = ", ".join(str(r) for r in roots)
    with tempfile.TemporaryDirectory(prefix="leaderboard-publish-") as tmp:
        report = build_site(roots, Path(tmp) / "site")
        if report.records == 0:
            raise NotPublished(f"{named}: no result record found (nothing published to {branch})", report)
        if strict and (report.skipped or report.skipped_experiments):
            n = len(report.skipped) + len(report.skipped_experiments)
            raise NotPublished(f"{named}: {n} record(s) or experiment summaries skipped (see above); "
                               f"--strict: nothing published to {branch}", report)
        if message is None:
            message = default_message(report.records, source)
        commit = _import(report.out, top, branch=branch, remote=remote, push=push, message=message)
    return Published(branch, commit, report.records, source, message, remote if push else None, report)


def default_message(records: int, source: str | None) -> str:
    plural = "" if records == 1 else "s"
    origin = f"commit {source}" if source else "a repository with no commit"
    return f"Leaderboard: {records} record{plural} from {origin} (python -m harness leaderboard publish)"


def _import(site: Path, top: Path, *, branch: str, remote: str, push: bool, message: str) -> str:
    """Commit `site` to `branch` with ghp-import (and push); the new commit."""
    with _cwd(top):
        if push:
            _fetch_published(top, remote, branch)
        before = _git(top, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
        try:
            ghp_import.ghp_import(str(site.resolve()), mesg=message, branch=branch, remote=remote, push=push,
                                  nojekyll=True, force=False, no_history=False, prefix=None, cname=None,
                                  followlinks=False)
        except ghp_import.GhpError as exc:
            raise HarnessError(f"{top}: ghp-import could not commit to {branch}: {exc.message}") from None
        except subprocess.CalledProcessError as exc:  # the push (git printed why above)
            commit = _git(top, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
            raise HarnessError(f"{top}: pushing {branch} to {remote} failed (git exit {exc.returncode}); "
                               f"the commit {commit} is on the local branch {branch}") from None
    after = _git(top, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
    if not after or after == before:
        raise HarnessError(f"{top}: ghp-import made no commit on {branch} (git fast-import failed: see above)")
    return after


def _fetch_published(top: Path, remote: str, branch: str) -> None:
    """Fetch REMOTE's BRANCH into refs/remotes/REMOTE/BRANCH when it exists, so ghp-import builds on it."""
    found = subprocess.run(["git", "ls-remote", "--exit-code", "--heads", remote, f"refs/heads/{branch}"], cwd=top,
                           capture_output=True, text=True)
    if found.returncode == 2:  # no such branch yet: the first publish
        return
    if found.returncode != 0:
        raise HarnessError(f"{top}: cannot read remote {remote!r}: {found.stderr.strip() or 'git ls-remote failed'}")
    _git(top, "fetch", "--quiet", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}")


def _work_tree(repo: Path) -> Path:
    if not repo.is_dir():
        raise HarnessError(f"{repo}: no such folder (--repo names the git working tree to commit in)")
    done = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise HarnessError(f"{repo}: not a git working tree ({done.stderr.strip() or 'git rev-parse failed'})")
    return Path(done.stdout.strip())


def _git(top: Path, *args: str, check: bool = True) -> str | None:
    """git's stdout, stripped; None when it fails and not `check`."""
    done = subprocess.run(["git", *args], cwd=top, capture_output=True, text=True)
    if done.returncode != 0:
        if check:
            raise HarnessError(f"{top}: git {' '.join(args)} failed: {done.stderr.strip()}")
        return None
    return done.stdout.strip()


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """ghp-import runs git in the current directory (contextlib.chdir needs Python 3.11)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
