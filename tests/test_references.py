"""`python -m harness run` runs a submission's [references] first, on its datasets and seeds; bad names fail early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.errors import HarnessError
from harness.protocol.references import resolve_references
from harness.protocol.submission import load_submission
from tests.test_runner import SEEDED_POP, make_submission, record_of

FAILING = """
from harness.protocol.adapter import Adapter

class TestAdapter(Adapter):
    def fit(self, train):
        raise RuntimeError("the reference broke")

    def retrieve(self, task, requests, k):
        raise AssertionError("never reached")
"""


@pytest.fixture(scope="module")
def sims():
    for name in ("sim1", "sim2"):
        build_dataset(name)


def fit_calls(cache: Path, submission: str) -> dict[str, int]:
    """{"<dataset>/seed<k>": fits} from the test adapter's counter files in the work folders."""
    work = cache / "work"
    out = {}
    for path in work.glob(f"{submission}-*/*/seed*/fit_calls"):
        out[f"{path.parent.parent.name}/{path.parent.name}"] = int(path.read_text())
    return out


def run(*args) -> int:
    return main(["run", *map(str, args), "--no-progress", "--no-site"])


def test_references_run_first_on_the_same_datasets_and_seeds_and_are_reused(sims, tmp_path, _isolated_cache):
    subs, out = tmp_path / "subs", tmp_path / "out"
    make_submission(subs, "ref_r", SEEDED_POP, tasks=("rec",), datasets=("sim1",), params="noise = 0.5")
    make_submission(subs, "ref_s", SEEDED_POP, tasks=("search",), datasets=("sim1",),
                    params='popularity = "search"\nnoise = 0.5')
    joint = make_submission(subs, "j1", SEEDED_POP, datasets=("sim1",), references={"rec": "ref_r", "search": "ref_s"})

    assert run(joint, "-d", "sim2", "--seeds", "0", "1", "--out", out) == 0
    for ref in ("ref_r", "ref_s"):
        assert record_of(out, "sim2", ref)["seeds"] == [0, 1]  # sim2 is not in their configs: the run's datasets win
        assert fit_calls(_isolated_cache, ref) == {"sim2/seed0": 1, "sim2/seed1": 1}
    record = record_of(out, "sim2", "j1")
    assert {t: {row["reference"] for row in rows} for t, rows in record["significance"].items()} == {
        "rec": {"ref_r"}, "search": {"ref_s"}}
    assert "comparison_notes" not in record["diagnostics"]
    assert record["diagnostics"]["rec"]["reference"] == "ref_r"  # §7 diagnostics against the reference's predictions

    # Again: every unit is reused, nothing is retrained.
    assert run(joint, "-d", "sim2", "--seeds", "0", "1", "--out", out) == 0
    assert fit_calls(_isolated_cache, "ref_r") == {"sim2/seed0": 1, "sim2/seed1": 1}
    assert fit_calls(_isolated_cache, "j1") == {"sim2/seed0": 1, "sim2/seed1": 1}


def test_no_references_leaves_them_alone(sims, tmp_path, _isolated_cache):
    subs, out = tmp_path / "subs", tmp_path / "out"
    make_submission(subs, "lonely_ref", SEEDED_POP, tasks=("rec",))
    joint = make_submission(subs, "j2", SEEDED_POP, tasks=("rec",), references={"rec": "lonely_ref"})
    assert run(joint, "--out", out, "--no-references") == 0
    assert not (out / "sim1" / "lonely_ref").exists()
    assert fit_calls(_isolated_cache, "lonely_ref") == {}
    (note,) = record_of(out, "sim1", "j2")["diagnostics"]["comparison_notes"]
    assert note["missing"] is True and "has no record" in note["note"]


def test_a_misspelt_reference_fails_before_any_training(sims, tmp_path, capsys, _isolated_cache):
    subs, out = tmp_path / "subs", tmp_path / "out"
    make_submission(subs, "rec_model", SEEDED_POP, tasks=("rec",))
    joint = make_submission(subs, "j3", SEEDED_POP, references={"rec": "rec_modle"})
    assert run(joint, "--out", out) == 2
    err = capsys.readouterr().err
    assert "'references.rec' = 'rec_modle'" in err and str(joint / "config.toml") in err
    assert "Did you mean 'rec_model'?" in err and "Known submissions" in err and "rec_model" in err
    assert not out.exists()
    assert fit_calls(_isolated_cache, "j3") == {} and fit_calls(_isolated_cache, "rec_model") == {}


@pytest.mark.parametrize(
    "references, message",
    [
        ({"search": "rec_only"}, "rec_only serves ['rec'], not 'search'"),
        ({"rec": "j4"}, "names this submission itself"),
        ({"rec": "broken"}, "the reference's own config is not usable"),
    ],
)
def test_unusable_references_are_errors_naming_the_key(sims, tmp_path, references, message):
    subs = tmp_path / "subs"
    make_submission(subs, "rec_only", SEEDED_POP, tasks=("rec",))
    (subs / "broken").mkdir()
    (subs / "broken" / "config.toml").write_text("[submission]\n")
    joint = make_submission(subs, "j4", SEEDED_POP, references=references)
    with pytest.raises(HarnessError, match="references") as info:
        resolve_references(load_submission(joint))
    assert message in str(info.value)


def test_a_missing_dataset_stops_the_run_before_a_reference_trains(sims, tmp_path, _isolated_cache):
    subs, out = tmp_path / "subs", tmp_path / "out"
    make_submission(subs, "ref5", SEEDED_POP, tasks=("rec",))
    joint = make_submission(subs, "j5", SEEDED_POP, tasks=("rec",), references={"rec": "ref5"})
    assert run(joint, "-d", "sim1", "-d", "sim3:pairs_in_qrels=0.125", "--out", out) == 2
    assert fit_calls(_isolated_cache, "ref5") == {}


def test_a_failing_reference_is_reported_and_marked_missing_in_the_record(sims, tmp_path, capsys):
    subs, out = tmp_path / "subs", tmp_path / "out"
    make_submission(subs, "bad_ref", FAILING, tasks=("rec",))
    make_submission(subs, "good_ref", SEEDED_POP, tasks=("search",), params='popularity = "search"')
    joint = make_submission(subs, "j6", SEEDED_POP, references={"rec": "bad_ref", "search": "good_ref"})
    assert main(["run", str(joint), "--out", str(out), "--no-progress"]) == 1  # the site is built too
    printed = capsys.readouterr().out
    assert "RuntimeError: the reference broke" in printed
    assert "j6's rec comparison on sim1 is missing seed(s) 0" in printed

    record = record_of(out, "sim1", "j6")
    assert record["units"][0]["status"] == "ok"  # the submission itself still ran
    assert set(record["significance"]) == {"search"}
    (note,) = record["diagnostics"]["comparison_notes"]
    assert note["task"] == "rec" and note["missing"] is True
    assert "every seed of reference 'bad_ref' failed (RuntimeError: the reference broke)" in note["note"]
    page = (out.parent / "out-site" / "index.html").read_text()
    assert "every seed of reference &#39;bad_ref&#39; failed (RuntimeError: the reference broke)" in page


def test_a_published_reference_that_matches_is_used_without_retraining(sims, tmp_path, _isolated_cache, monkeypatch):
    subs, published, out = tmp_path / "subs", tmp_path / "official", tmp_path / "out"
    make_submission(subs, "pub_r", SEEDED_POP, tasks=("rec",), datasets=("sim1",), params="noise = 0.5")
    joint = make_submission(subs, "j3", SEEDED_POP, tasks=("rec",), datasets=("sim1",), references={"rec": "pub_r"})
    assert run(subs / "pub_r", "--seeds", "0", "1", "--out", published) == 0  # the "published" results
    assert fit_calls(_isolated_cache, "pub_r") == {"sim1/seed0": 1, "sim1/seed1": 1}
    from harness.cli import run as run_cli
    monkeypatch.setattr(run_cli, "PUBLISHED_DEFAULT", published)  # as leaderboard/official in the repository

    assert run(joint, "--seeds", "0", "--out", out) == 0
    assert fit_calls(_isolated_cache, "pub_r") == {"sim1/seed0": 1, "sim1/seed1": 1}  # not trained again
    assert not (out / "sim1" / "pub_r").exists()
    record = record_of(out, "sim1", "j3")
    published_record = record_of(published, "sim1", "pub_r")
    assert {row["reference"] for row in record["significance"]["rec"]} == {"pub_r"}
    assert record["significance"]["rec"][0]["reference_fingerprint"] == published_record["dataset"]["fingerprint"]
    assert record["diagnostics"]["rec"]["reference"] == "pub_r"  # read from the published units
    notes = record["diagnostics"]["comparison_notes"]  # seeds 0 against the reference's 0 and 1: said, not hidden
    assert [n["missing"] for n in notes] == [False] and "different seeds" in notes[0]["note"]

    from harness.evaluation.verify import verify_record_folder
    alone = verify_record_folder(out / "sim1" / "j3")  # the reference is not beside it: rows checked for themselves
    assert alone.ok and any("has no usable record" in u for u in alone.unverified)
    both = verify_record_folder(out / "sim1" / "j3", also=[published])  # recomputed against the published record
    assert both.ok and any("significance test(s) from the per-query values of both records" in c for c in both.checked)

    # The reference's config changed since it was published: trained here, into --out.
    config = subs / "pub_r" / "config.toml"
    config.write_text(config.read_text().replace("noise = 0.5", "noise = 0.25"))
    assert run(joint, "--seeds", "0", "--out", out) == 0
    assert fit_calls(_isolated_cache, "pub_r")["sim1/seed0"] == 1 and (out / "sim1" / "pub_r" / "record.json").is_file()
    config.write_text(config.read_text().replace("noise = 0.25", "noise = 0.5"))

    # A published record that no longer verifies is never used (trained here instead).
    forged = dict(published_record)
    forged["metrics"]["rec"]["R@10"]["mean"] += 0.1
    (published / "sim1" / "pub_r" / "record.json").write_text(json.dumps(forged))
    from harness.evaluation.published import published_reference
    from harness.data.store import CompiledDataset
    with CompiledDataset.open("sim1") as ds:
        folder, why = published_reference([published], ds, load_submission(subs / "pub_r"), [0], "diverse-beam")
    assert folder is None and "does not verify" in why


def test_no_published_trains_the_reference(sims, tmp_path, _isolated_cache, capsys):
    subs, published, out = tmp_path / "subs", tmp_path / "official", tmp_path / "out"
    make_submission(subs, "pub_r2", SEEDED_POP, tasks=("rec",), datasets=("sim1",))
    joint = make_submission(subs, "j4", SEEDED_POP, tasks=("rec",), datasets=("sim1",), references={"rec": "pub_r2"})
    assert run(subs / "pub_r2", "--seeds", "0", "--out", published) == 0
    assert run(joint, "--seeds", "0", "--out", out, "--published", published, "--no-published") == 0
    assert (out / "sim1" / "pub_r2" / "record.json").is_file()
    capsys.readouterr()
    assert run(joint, "--seeds", "0", "--out", out, "--published", tmp_path / "missing") != 0
    assert f"--published {tmp_path / 'missing'}: no such folder" in capsys.readouterr().err
