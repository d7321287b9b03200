"""End to end through `python -m harness run`: records, resumption, failures, references, determinism."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.data.store import CompiledDataset
from harness.errors import HarnessError
from harness.runner import Runner
from harness.protocol.submission import load_submission
from harness.records.validate import read_record

REPO = Path(__file__).resolve().parents[1]
VOLATILE = ("timing", "environment", "harness")  # dates, durations, machine and commit: everything else must repeat


@pytest.fixture(scope="module")
def sims():
    for name in ("sim1", "sim2"):
        build_dataset(name)
    return ["sim1", "sim2"]


def make_submission(root: Path, name: str, adapter_code: str, *, tasks=("rec", "search"), datasets=("sim1",),
                    seeds=(0,), references: dict | None = None, params: str = "") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    refs = "".join(f'{t} = "{r}"\n' for t, r in (references or {}).items())
    (folder / "config.toml").write_text(
        textwrap.dedent(
            f"""
            [submission]
            display_name = "{name}"
            adapter = "adapter.py:TestAdapter"
            kind = "baseline"
            tasks = {json.dumps(list(tasks))}
            datasets = {json.dumps(list(datasets))}
            seeds = {json.dumps(list(seeds))}
            """
        )
        + (f"[references]\n{refs}" if refs else "")
        + (f"[params]\n{params}\n" if params else "")
    )
    (folder / "adapter.py").write_text(textwrap.dedent(adapter_code))
    return folder


# Ranks by popularity of one task, with a seed-dependent shuffle of the tail so seeds differ.
SEEDED_POP = """
import numpy as np
from harness.protocol.adapter import Adapter

class TestAdapter(Adapter):
    def fit(self, train):
        counts = train.catalogue.popularity(self.params.get("popularity", "rec"))
        noise = np.random.default_rng(self.seed).random(len(counts)) * self.params.get("noise", 0.0)
        self.order = np.argsort(-(counts + noise), kind="stable")
        calls = self.workdir / "fit_calls"
        calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))

    def retrieve(self, task, requests, k):
        return np.broadcast_to(self.order[:k], (len(requests), k))
"""


def record_of(out: Path, dataset: str, name: str) -> dict:
    return read_record(out / dataset / name / "record.json")


def stable_part(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in VOLATILE}
    out["units"] = [{k: v for k, v in u.items() if k != "timings"} for u in record["units"]]
    return out


def test_pop_submissions_produce_valid_records_with_correct_scores(sims, tmp_path):
    out = tmp_path / "results"
    assert main(["run", str(REPO / "submissions" / "pop_rec"), "-d", "sim1", "--out", str(out), "--no-progress"]) == 0
    record = record_of(out, "sim1", "pop_rec")
    assert record["dataset"]["headline_k"] == 10
    assert record["protocol"]["params"]["ks"] == [1, 5, 10]
    assert set(record["metrics"]) == {"rec", "search"}
    # Recompute R@10 for recommendation by hand from the dataset: Pop_R's top 10 against each test target.
    with CompiledDataset.open("sim1") as ds:
        cat = ds.catalogue()
        top10 = np.lexsort((np.arange(len(cat)), -cat.pop_rec))[:10]
        targets = ds.rec_targets("test")
        expected = np.isin(targets, top10).mean()
        head_targets = cat.head_rec[targets]
        expected_head = np.isin(targets[head_targets], top10).mean()
    assert record["metrics"]["rec"]["R@10"]["mean"] == pytest.approx(expected)
    assert record["metrics"]["rec"]["R@10"]["n"] == len(targets)
    assert record["metrics"]["rec"]["R@10/head"]["mean"] == pytest.approx(expected_head)
    assert record["metrics"]["rec"]["R@10/head"]["n"] + record["metrics"]["rec"]["R@10/torso"]["n"] == len(targets)
    for f in ("per_query.parquet", "rec.seed0.run", "search.seed0.run", "rec.qrels", "search.qrels"):
        assert (out / "sim1" / "pop_rec" / f).is_file()


def test_same_seed_gives_identical_records_apart_from_timings(sims, tmp_path):
    folder = make_submission(tmp_path / "subs", "noisy", SEEDED_POP, seeds=(0, 1), params="noise = 1000.0")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", str(folder), "--out", str(a), "--no-progress"]) == 0
    assert main(["run", str(folder), "--out", str(b), "--no-progress"]) == 0
    ra, rb = record_of(a, "sim1", "noisy"), record_of(b, "sim1", "noisy")
    assert stable_part(ra) == stable_part(rb)
    assert (a / "sim1/noisy/rec.seed1.run").read_bytes() == (b / "sim1/noisy/rec.seed1.run").read_bytes()
    # the seeds really differ, so the check above is not vacuous
    assert ra["metrics"]["rec"]["R@10"]["per_seed"]["0"] != ra["metrics"]["rec"]["R@10"]["per_seed"]["1"]


def test_finished_units_are_reused_and_failed_units_retried(sims, tmp_path):
    code = SEEDED_POP.replace(
        "    def fit(self, train):\n",
        "    def fit(self, train):\n"
        "        if self.seed == 1 and not (self.submission_dir / 'fixed').exists():\n"
        "            raise RuntimeError('seed 1 is broken')\n",
    )
    folder = make_submission(tmp_path / "subs", "flaky", code, seeds=(0, 1))
    out = tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "--no-progress"]) == 1  # a failed unit: exit 1, run goes on
    record = record_of(out, "sim1", "flaky")
    statuses = {u["seed"]: u for u in record["units"]}
    assert statuses[0]["status"] == "ok"
    assert statuses[1]["status"] == "failed"
    assert "seed 1 is broken" in statuses[1]["error"]["message"]
    assert "RuntimeError" in statuses[1]["error"]["traceback"]
    assert record["metrics"]["rec"]["R@10"]["per_seed"].keys() == {"0"}

    (folder / "fixed").write_text("")
    assert main(["run", str(folder), "--out", str(out), "--no-progress"]) == 0
    record = record_of(out, "sim1", "flaky")
    assert [u["status"] for u in record["units"]] == ["ok", "ok"]
    sub = load_submission(folder)
    runner = Runner(sub, out_dir=out)
    with CompiledDataset.open("sim1") as ds:
        fit_calls = {s: int((runner.workdir(ds, s) / "fit_calls").read_text()) for s in (0, 1)}
    assert fit_calls == {0: 1, 1: 1}  # seed 0 was not retrained; seed 1 trained once it could


def test_invalid_rankings_fail_the_unit_with_a_clear_error(sims, tmp_path):
    code = SEEDED_POP.replace("return np.broadcast_to(self.order[:k], (len(requests), k))",
                              "return [[0, 0]] * len(requests)")
    folder = make_submission(tmp_path / "subs", "dups", code, tasks=("search",))
    out = tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "--no-progress"]) == 1
    unit = record_of(out, "sim1", "dups")["units"][0]
    assert unit["status"] == "failed"
    assert "adapter.py:TestAdapter (search): item 0 appears twice for search query" in unit["error"]["message"]


def test_missing_dataset_says_how_to_build_it(sims, tmp_path, capsys):
    folder = make_submission(tmp_path / "subs", "x", SEEDED_POP, datasets=("sim3:pairs_in_qrels=0.25",))
    assert main(["run", str(folder), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "python -m harness data build sim3:pairs_in_qrels=0.25" in err
    assert not (tmp_path / "o").exists()  # nothing was started


def test_significance_against_a_reference_with_holm(sims, tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    ref = make_submission(subs, "ref", SEEDED_POP, params='popularity = "search"')
    joint = make_submission(subs, "joint", SEEDED_POP, references={"rec": "ref", "search": "ref"},
                            params='popularity = "rec"')
    # Without the reference's record (and told not to run it) the comparison is marked missing, never dropped.
    assert main(["run", str(joint), "--out", str(out), "--no-progress", "--no-references"]) == 0
    notes = record_of(out, "sim1", "joint")["diagnostics"]["comparison_notes"]
    assert {(n["task"], n["missing"]) for n in notes} == {("rec", True), ("search", True)}
    assert all("reference 'ref' has no record" in n["note"] for n in notes)
    assert not (out / "sim1" / "ref").exists()
    assert main(["run", str(ref), "--out", str(out), "--no-progress"]) == 0
    assert main(["run", str(joint), "--out", str(out), "--no-progress", "--no-references"]) == 0
    record = record_of(out, "sim1", "joint")
    rows = record["significance"]["rec"] + record["significance"]["search"]
    assert len(rows) == 6 and {r["metric"] for r in rows} == {"R@10", "R@10/head", "R@10/torso"}
    # recompute one comparison independently from the per-query files
    import pyarrow.parquet as pq
    from scipy import stats

    a = pq.read_table(out / "sim1/joint/per_query.parquet")
    b = pq.read_table(out / "sim1/ref/per_query.parquet")

    def rec_values(table):
        rows_ = [r for r in table.to_pylist() if r["task"] == "rec"]
        return {r["qid"]: r["R@10"] for r in rows_}

    va, vb = rec_values(a), rec_values(b)
    qids = sorted(va)
    expected = stats.ttest_rel([va[q] for q in qids], [vb[q] for q in qids])
    row = next(r for r in record["significance"]["rec"] if r["metric"] == "R@10")
    assert row["p"] == pytest.approx(expected.pvalue)
    assert row["diff"] == pytest.approx(np.mean([va[q] - vb[q] for q in qids]))
    ps = sorted(r["p"] for r in rows)
    assert min(r["p_holm"] for r in rows) == pytest.approx(min(1.0, ps[0] * len(ps)))
    assert row["reference"] == "ref"
    # §7 diagnostics against the reference's stored predictions of the same seed
    diag = record["diagnostics"]
    assert {"rec", "search"} <= set(diag)
    assert diag["rec"]["reference"] == "ref" and diag["rec"]["seed"] == 0
    assert diag["rec"]["n_requests"] == len(va)
    assert diag["rec"]["n_changed"] > 0  # Pop_R and Pop_S rank differently on sim1
    assert {"h1", "h2", "redundancy"} <= set(diag["search"])


def test_interrupted_record_write_keeps_the_previous_record(sims, tmp_path, monkeypatch):
    folder = make_submission(tmp_path / "subs", "p", SEEDED_POP)
    out = tmp_path / "out"
    assert main(["run", str(folder), "--out", str(out), "--no-progress"]) == 0
    before = (out / "sim1/p/record.json").read_bytes()

    import harness.records.files as files

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files, "write_trec_run", boom)
    with pytest.raises(OSError):
        main(["run", str(folder), "--out", str(out), "--no-progress"])
    assert (out / "sim1/p/record.json").read_bytes() == before
    read_record(out / "sim1/p/record.json")


def test_item_embeddings_are_stored_beside_the_rankings_and_bad_ones_fail_the_unit(sims, tmp_path):
    code = SEEDED_POP + (
        "\n    def item_embeddings(self):\n"
        "        n = len(self.order)\n"
        "        return np.arange(n * 3, dtype=np.float64).reshape(n, 3) if self.params.get('good') else np.ones((n - 1, 3))\n"
    )
    good = make_submission(tmp_path / "subs", "emb", code, params="good = true")
    out = tmp_path / "out"
    assert main(["run", str(good), "--out", str(out), "--no-progress", "--no-site"]) == 0
    stored = np.load(out / "sim1" / "emb" / "units" / "seed0" / "item_embeddings.npy")
    with CompiledDataset.open("sim1") as ds:
        n_items = len(ds.catalogue())
    assert stored.dtype == np.float32 and stored.shape == (n_items, 3)
    assert stored[5].tolist() == [15.0, 16.0, 17.0]  # row i is item i, as given

    bad = make_submission(tmp_path / "subs", "emb_bad", code)
    assert main(["run", str(bad), "--out", str(out), "--no-progress", "--no-site"]) == 1
    unit = record_of(out, "sim1", "emb_bad")["units"][0]
    assert unit["status"] == "failed"
    assert f"item_embeddings() must return [n_items={n_items}, dim], got shape ({n_items - 1}, 3)" in unit["error"]["message"]


def test_initial_item_embeddings_are_stored_beside_the_trained_ones_and_must_match_their_shape(sims, tmp_path):
    code = SEEDED_POP + (
        "\n    def item_embeddings(self):\n"
        "        return np.ones((len(self.order), 3))\n"
        "\n    def initial_item_embeddings(self):\n"
        "        n = len(self.order) - int(self.params.get('short', 0))\n"
        "        return np.zeros((n, 3))\n"
    )
    out = tmp_path / "out"
    good = make_submission(tmp_path / "subs", "init", code)
    assert main(["run", str(good), "--out", str(out), "--no-progress", "--no-site"]) == 0
    unit = out / "sim1" / "init" / "units" / "seed0"
    assert np.load(unit / "item_embeddings_initial.npy").shape == np.load(unit / "item_embeddings.npy").shape
    assert not np.load(unit / "item_embeddings_initial.npy").any()
    without = make_submission(tmp_path / "subs", "plain", SEEDED_POP)  # neither method: neither file
    assert main(["run", str(without), "--out", str(out), "--no-progress", "--no-site"]) == 0
    assert not list((out / "sim1" / "plain" / "units" / "seed0").glob("item_embeddings*"))
    bad = make_submission(tmp_path / "subs", "init_bad", code, params="short = 1")
    assert main(["run", str(bad), "--out", str(out), "--no-progress", "--no-site"]) == 1
    message = record_of(out, "sim1", "init_bad")["units"][0]["error"]["message"]
    assert "initial_item_embeddings() must return [n_items=" in message


def test_two_results_folders_never_share_a_site(sims, tmp_path):
    folder = make_submission(tmp_path / "subs", "ranked", SEEDED_POP)
    for out in ("x", "y"):
        assert main(["run", str(folder), "--out", str(tmp_path / out), "--no-progress"]) == 0
    assert (tmp_path / "x-site" / "index.html").is_file() and (tmp_path / "y-site" / "index.html").is_file()
    assert not (tmp_path / "site").exists()


def test_only_rank_zero_writes_under_a_launcher(sims, tmp_path, monkeypatch):
    """Under `deepspeed --num_gpus N` every rank runs the runner; a non-zero rank must leave no file behind."""
    folder = make_submission(tmp_path / "subs", "ranked", SEEDED_POP)
    out = tmp_path / "out"
    monkeypatch.setenv("RANK", "1")
    assert main(["run", str(folder), "--out", str(out), "--no-progress"]) == 0
    assert not out.exists() and not (tmp_path / "out-site").exists()
    monkeypatch.setenv("RANK", "0")
    assert main(["run", str(folder), "--out", str(out), "--no-progress"]) == 0
    assert (out / "sim1" / "ranked" / "record.json").is_file() and (tmp_path / "out-site" / "index.html").is_file()


# Half of each list is left empty under the paper's decoding (as a diverse beam search's duplicates would leave it) and
# filled under "distinct": the decoding reaches the adapter and its lists, and nothing else changes.
DECODING_AWARE = SEEDED_POP.replace(
    "        return np.broadcast_to(self.order[:k], (len(requests), k))",
    "        row = self.order[:k].copy()\n"
    "        if self.decoding == 'diverse-beam':\n"
    "            row[k // 2:] = -1\n"
    "        return np.broadcast_to(row, (len(requests), k))",
)


def test_a_decoding_has_its_own_records_lists_and_comparisons(sims, tmp_path):
    from harness.leaderboard import build_site

    subs, out = tmp_path / "subs", tmp_path / "out"
    make_submission(subs, "ref", DECODING_AWARE, params='popularity = "search"\nnoise = 0.5')
    joint = make_submission(subs, "joint", DECODING_AWARE, references={"rec": "ref", "search": "ref"},
                            params='popularity = "rec"')
    assert main(["run", str(joint), "--out", str(out), "--no-progress", "--no-site"]) == 0
    paper = record_of(out, "sim1", "joint")
    before = (out / "sim1" / "joint" / "record.json").read_bytes()
    assert paper["protocol"]["params"]["decoding"] == "diverse-beam"
    assert paper["lists"]["rec"] == {"depth": 10, "mean_distinct_items": 5.0, "per_seed": {"0": 5.0}}
    assert len(paper["significance"]["rec"]) == 3

    # Under "distinct" without its references' records: nothing is compared with the paper-decoded reference.
    assert main(["run", str(joint), "--out", str(out), "--no-progress", "--no-site", "--no-references",
                 "--decoding", "distinct"]) == 0
    distinct = read_record(out / "sim1" / "joint@distinct" / "record.json")
    assert (out / "sim1" / "joint" / "record.json").read_bytes() == before  # the paper's record is untouched
    assert distinct["protocol"]["params"]["decoding"] == "distinct"
    assert distinct["lists"]["search"]["mean_distinct_items"] == 10.0
    assert distinct["significance"] == {}
    notes = distinct["diagnostics"]["comparison_notes"]
    assert {n["task"] for n in notes if n["missing"]} == {"rec", "search"}
    assert all("(decoding distinct)" in n["note"] for n in notes)

    # With them (the references run first, under the same decoding): tests against the distinct reference only.
    assert main(["run", str(joint), "--out", str(out), "--no-progress", "--no-site", "--decoding", "distinct"]) == 0
    distinct = read_record(out / "sim1" / "joint@distinct" / "record.json")
    ref_distinct = read_record(out / "sim1" / "ref@distinct" / "record.json")
    row = next(r for r in distinct["significance"]["rec"] if r["metric"] == "R@10")
    assert row["reference_mean"] == pytest.approx(ref_distinct["metrics"]["rec"]["R@10"]["mean"])
    assert row["reference_mean"] != pytest.approx(record_of(out, "sim1", "ref")["metrics"]["rec"]["R@10"]["mean"])
    assert distinct["metrics"]["rec"]["R@10"]["mean"] > paper["metrics"]["rec"]["R@10"]["mean"]

    # The leaderboard: one table per decoding, labelled, and the short lists said.
    site = tmp_path / "site"
    build_site(out, site)
    page = (site / "dataset-sim1.html").read_text()
    # two groups, a table per measure (Recall, nDCG, RR) and cutoff (1, 5, 10)
    assert page.count('<table class="board sortable"') == 2 * 3 * 3
    assert "decoding <strong>distinct</strong>" in page and "decoding <strong>diverse-beam</strong> (the paper" in page
    assert "lists hold fewer distinct items than asked for" in page and "joint (recommendation) 5.0 of 10" in page
    # The overview shows the paper's decoding although the distinct records are newer
    index = (site / "index.html").read_text()
    assert "decoding <strong>diverse-beam</strong>" in index and "decoding <strong>distinct</strong>" not in index


def test_an_unknown_decoding_is_refused(sims, tmp_path):
    with pytest.raises(HarnessError, match="unknown decoding 'greedy'; allowed: diverse-beam, distinct"):
        Runner(load_submission(REPO / "submissions" / "pop_rec"), out_dir=tmp_path, decoding="greedy")
