"""A submission's [references], resolved to submissions and run before it, so its record can be compared.

    references = resolve_references(submission)    # {reference name: Submission}; errors before any training

A reference is another submission folder beside this one (`submissions/joint_t5` names `rec_t5`, found at
`submissions/rec_t5`). `python -m harness run` runs it first on exactly the datasets and seeds the submission is about to
run (harness/cli/run.py), so the paired test compares the same queries under the same seeds; its finished units are
reused like any run's. References of a
reference are not followed: a reference is compared with nothing, it is what others are compared with.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from harness.errors import HarnessError
from harness.protocol.submission import CONFIG_FILE, Submission, load_submission


def known_submissions(folder: Path) -> list[str]:
    """Names of the submission folders (those holding a config.toml) directly inside `folder`."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / CONFIG_FILE).is_file())


def resolve_references(sub: Submission) -> dict[str, Submission]:
    """{reference name: loaded Submission} for every distinct reference in `sub`'s [references].

    Every problem is a HarnessError naming the config key before anything trains: an unknown name (with the known
    submissions and a "did you mean"), a reference that does not serve the task it is named for, a submission naming
    itself, a reference whose own config is broken.
    """
    config = sub.folder / CONFIG_FILE
    siblings = sub.folder.parent
    resolved: dict[str, Submission] = {}
    for task, name in sorted(sub.references.items()):
        key = f"{config}: 'references.{task}' = {name!r}"
        if name == sub.name:
            raise HarnessError(f"{key} names this submission itself; a reference is another submission")
        if name not in resolved:
            folder = siblings / name
            if not (folder / CONFIG_FILE).is_file():
                known = [n for n in known_submissions(siblings) if n != sub.name]
                close = difflib.get_close_matches(name, known, n=2)
                hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise HarnessError(
                    f"{key}: no submission {folder / CONFIG_FILE}.{hint} Known submissions in {siblings}: "
                    f"{', '.join(known) or '(none)'}"
                )
            try:
                resolved[name] = load_submission(folder)
            except HarnessError as exc:
                raise HarnessError(f"{key}: the reference's own config is not usable: {exc}") from exc
        if task not in resolved[name].tasks:
            raise HarnessError(
                f"{key}: {name} serves {list(resolved[name].tasks)}, not {task!r}; name a submission that serves it"
            )
    return resolved
