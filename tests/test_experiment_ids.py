"""`python -m harness experiment run ids` end to end on the simulations with real generative T5 submissions at a
test-sized preset (t5-offline-tiny, one epoch, tiny vector-source budgets): every scheme's three models run, the
joint one is tested against the same scheme's references, the IDs are recorded, and figures are drawn. The
numbers at the offline preset are in docs/experiments.md, not asserted here."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.experiments.ids import scheme_params

REPO = Path(__file__).resolve().parents[1]
TINY = {"backbone": '"t5-offline-tiny"', "epochs": "1", "batch_size": "32", "valid_max_examples": "8", "progress": "false"}
TINY_IDS = ('semantic_ids = { source = "content", levels = 2, codes = 4, sasrec_epochs = 1, finetune_pairs = 64, '
            'finetune_batch = 16 }')


def tiny_copies(root: Path) -> Path:
    """The shipped semantic-ID trio with the test-sized preset (their [references] name each other)."""
    for name in ("rec_t5_semantic", "search_t5_semantic", "joint_t5_semantic"):
        shutil.copytree(REPO / "submissions" / name, root / name)
        config = root / name / "config.toml"
        text = config.read_text()
        text = text.split("[params.by_dataset.ml-small]")[0]  # the simulations only
        for key, value in TINY.items():
            text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
            if n == 0:
                text = text.replace("[params]\n", f"[params]\n{key} = {value}\n")
        text = re.sub(r"^semantic_ids = .*$", TINY_IDS, text, flags=re.M)
        config.write_text(text)
    return root


@pytest.mark.slow
def test_ids_runs_every_scheme_on_the_simulations_and_compares_within_each(tmp_path):
    subs = tiny_copies(tmp_path / "subs")
    out = tmp_path / "exp"
    args = ["experiment", "run", "ids", "--submissions", str(subs), "--joint", "joint_t5_semantic", "--out", str(out),
            "--datasets", "sim1", "sim2", "sim3", "--codes", "2", "4", "--no-site"]
    assert main(args) == 0
    summary = json.loads((out / "experiment.json").read_text())
    schemes = ["atomic"] + [f"semantic:{s}/{c}" for s in ("content", "collaborative", "concat", "multitask")
                            for c in (2, 4)]
    rows = summary["rows"]
    assert [(r["dataset"], r["ids"], r["task"]) for r in rows] == [
        (d, s, t) for d in ("sim1", "sim2", "sim3") for s in schemes for t in ("recommendation", "search")]
    for row in rows:
        joint = json.loads((out / row["record"]).read_text())
        reference = json.loads((out / row["reference_record"]).read_text())
        task = "rec" if row["task"] == "recommendation" else "search"
        tests = joint["significance"][task]
        assert tests and {t["reference"] for t in tests} == {reference["submission"]["name"]}  # the same scheme's
        joint_params, ref_params = joint["submission"]["config"]["params"], reference["submission"]["config"]["params"]
        assert joint_params["item_ids"] == ref_params["item_ids"] == ("atomic" if row["ids"] == "atomic" else "semantic")
        info = joint["units"][0]["adapter_info"]["item_ids"]
        if row["ids"] == "atomic":
            assert info.startswith("atomic") and row["collision"] is None
        else:
            source, codes = row["ids"].removeprefix("semantic:").split("/")
            assert joint_params["semantic_ids"]["source"] == ref_params["semantic_ids"]["source"] == source
            assert info["codes_per_level"] == int(codes) and info["settings"]["source"] == source
            ref_info = reference["units"][0]["adapter_info"]["item_ids"]
            assert ref_info["codes_sha256"] == info["codes_sha256"]  # the same IDs in both models
            assert row["collision"] == info["collision_rate"]
        assert 0 <= row["joint"] <= 1 and 0 <= row["specific"] <= 1
    figures = {f["file"] for f in summary["figures"]}
    assert "figures/ids-sim2-rec.svg" in figures and "figures/ids-sim2-search-multitask-codes.svg" in figures
    assert all((out / f).is_file() for f in figures)
    table = (out / "table.md").read_text()
    assert "semantic:collaborative/4" in table and "Δ joint" in table
    # resumable: a second run trains nothing and writes the same rows
    assert main(args) == 0
    again = json.loads((out / "experiment.json").read_text())
    assert [r["joint"] for r in again["rows"]] == [r["joint"] for r in rows]


def test_scheme_params_merge_over_the_submission_and_keep_settings_per_dataset():
    base = {"epochs": 10, "by_dataset": {"ml-small": {"epochs": 20}}}
    assert scheme_params(None, None, base) is None  # atomic IDs of an atomic submission: the submission itself
    semantic = scheme_params("collaborative", None, base)
    assert semantic["item_ids"] == "semantic" and semantic["semantic_ids"] == {"source": "collaborative", "levels": 2,
                                                                               "codes": 8}
    assert semantic["by_dataset"]["ml-small"] == {"epochs": 20, "semantic_ids": {"source": "collaborative",
                                                                                  "levels": 3, "codes": 32}}
    assert base["by_dataset"]["ml-small"] == {"epochs": 20}  # the submission's own params are not touched
    sem_base = {"item_ids": "semantic", "semantic_ids": {"source": "multitask", "codes": 8, "sasrec_epochs": 2},
                "by_dataset": {"ml-small": {"semantic_ids": {"source": "multitask", "levels": 3, "codes": 32}}}}
    content16 = scheme_params("content", 16, sem_base)
    assert content16["semantic_ids"] == {"source": "content", "levels": 2, "codes": 16, "sasrec_epochs": 2}
    assert content16["by_dataset"]["ml-small"]["semantic_ids"]["codes"] == 16
    atomic = scheme_params(None, None, sem_base)
    assert atomic == {"item_ids": "atomic", "semantic_ids": {}, "by_dataset": {"ml-small": {}}}


def test_bad_ids_options_are_clear_errors(tmp_path):
    from harness.experiments.context import Context
    from harness.experiments.ids import run_ids

    ctx = Context(out=tmp_path, submissions_dir=REPO / "submissions")
    with pytest.raises(HarnessError, match="unknown vector source"):
        run_ids(ctx, sources=["nope"])
    with pytest.raises(HarnessError, match="codes"):
        run_ids(ctx, codes=[1])


def test_the_shipped_semantic_trio_stands_for_its_own_scheme(tmp_path):
    from harness.experiments.context import Context
    from harness.experiments.ids import _shipped_semantic

    ctx = Context(out=tmp_path, submissions_dir=REPO / "submissions")
    joint = ctx.submission("joint_t5")
    source = ctx.submission("joint_t5_semantic").params["semantic_ids"]["source"]
    assert _shipped_semantic(ctx, joint, source, None).name == "joint_t5_semantic"
    assert _shipped_semantic(ctx, ctx.submission("rec_t5"), source, None).name == "rec_t5_semantic"
    other = next(s for s in ("content", "collaborative", "concat", "multitask") if s != source)
    assert _shipped_semantic(ctx, joint, other, None) is None  # another source: a variant
    assert _shipped_semantic(ctx, joint, source, 4) is None  # another codebook: a variant
    assert _shipped_semantic(ctx, joint, None, None) is None  # atomic: the atomic submission itself
