"""`python -m harness experiment ...`: plans of ordinary runs, resumable, summarised from their records alone.

The submissions here are tiny test adapters (popularity with a seeded tail), so the tests check the plumbing:
which runs happen on which datasets, what the summary says about them, resumption and figures. The T5 numbers
of the real sweeps are in the closing notes and docs/experiments.md, not asserted."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data.store import CompiledDataset
from harness.errors import HarnessError
from harness.experiments.context import Context, variant
from harness.experiments.projection import chance_purity, cluster_purity, nearest_neighbours, popularity_locality
from harness.leaderboard.synthetic import LINEUP, synthetic_record
from harness.protocol.submission import load_submission
from harness.records.record import ResultRecord

ADAPTER = """
import numpy as np
from harness.protocol.adapter import Adapter


class TestAdapter(Adapter):
    def fit(self, train):
        counts = train.catalogue.popularity(self.params.get("popularity", "rec"))
        noise = np.random.default_rng(self.seed).random(len(counts)) * 0.5
        self.order = np.argsort(-(counts + noise), kind="stable")
        self.cluster = train.catalogue.cluster
        calls = self.workdir / "fit_calls"
        calls.write_text(str(int(calls.read_text()) + 1 if calls.exists() else 1))
        (self.workdir / "params.json").write_text(__import__("json").dumps(self.params, sort_keys=True))

    def retrieve(self, task, requests, k):
        return np.broadcast_to(self.order[:k], (len(requests), k))

    def item_embeddings(self):
        if self.params.get("by_cluster") and self.cluster is not None:
            return np.eye(int(self.cluster.max()) + 1)[self.cluster] + 1e-3 * np.arange(len(self.cluster))[:, None]
        return np.random.default_rng(self.seed).normal(size=(len(self.order), 4))
"""


def make(root: Path, name: str, *, popularity: str, references: dict | None = None, extra: str = "") -> None:
    folder = root / name
    folder.mkdir(parents=True)
    refs = "".join(f'{t} = "{r}"\n' for t, r in (references or {}).items())
    (folder / "config.toml").write_text(textwrap.dedent(f"""
        [submission]
        display_name = "{name}"
        adapter = "adapter.py:TestAdapter"
        kind = "generative"
        tasks = ["rec", "search"]
        datasets = ["sim2"]
        """) + (f"[references]\n{refs}" if refs else "") + f'[params]\npopularity = "{popularity}"\n{extra}')
    (folder / "adapter.py").write_text(ADAPTER)


@pytest.fixture
def subs(tmp_path):
    root = tmp_path / "subs"
    make(root, "gen_r", popularity="rec", extra="by_cluster = true\n")
    make(root, "gen_s", popularity="search")
    make(root, "joint", popularity="search", references={"rec": "gen_r", "search": "gen_s"})
    return root


def experiment(subs: Path, out: Path, *args: str) -> int:
    return main(["experiment", "run", *args, "--submissions", str(subs), "--joint", "joint", "--out", str(out)])


def fit_calls(subs: Path, name: str, dataset: str, seed: int = 0) -> int:
    from harness.runner import Runner

    runner = Runner(load_submission(subs / name), out_dir=Path("unused"))
    with CompiledDataset.open(dataset) as ds:
        return int((runner.workdir(ds, seed) / "fit_calls").read_text())


def test_sim2_sweep_runs_reference_then_joint_per_level_and_sample_and_resumes(subs, tmp_path, capsys):
    out = tmp_path / "exp"
    assert experiment(subs, out, "sim2", "--levels", "0", "1", "--samples", "1", "0.65", "--seeds", "0", "1") == 0
    summary = json.loads((out / "experiment.json").read_text())
    assert summary["kind"] == "jsr-harness experiment" and summary["name"] == "sim2"
    assert summary["metric_key"] == "R@10"  # the column the site marks with ‡
    # one (reference, joint) pair of rows per sample and level, recommendation only (SIM2's target task)
    keyed = {(r["sample"], r["level"], r["model"]): r for r in summary["rows"]}
    assert set(keyed) == {(s, l, m) for s in ("100%", "65%") for l in ("0%", "100%") for m in ("gen_r", "joint")}
    assert {r["task"] for r in summary["rows"]} == {"recommendation"}
    # q_match=1 is SIM2's default, so level 100% is the dataset `sim2` itself (canonical names, docs/datasets.md)
    for dataset in ("sim2__q_match-0", "sim2", "sim2__q_match-0__sample-0.65", "sim2__sample-0.65"):
        for name in ("gen_r", "joint"):
            assert (out / "results" / dataset / name / "record.json").is_file()
        assert not (out / "results" / dataset / "gen_s").exists()  # search's reference is not needed for SIM2

    # the table's numbers are the records' numbers, and the joint row carries the record's test against gen_r
    row = keyed[("65%", "100%", "joint")]
    record = json.loads((out / row["record"]).read_text())
    assert row["R@10"] == record["metrics"]["rec"]["R@10"]["mean"] and row["seeds"] == 2
    test = next(t for t in record["significance"]["rec"] if t["metric"] == "R@10")
    assert test["reference"] == "gen_r" and row["p"] == test["p_holm"] and row["significant"] == test["significant"]
    ref_row = keyed[("65%", "100%", "gen_r")]
    assert row["delta"] == pytest.approx(row["R@10"] - ref_row["R@10"])
    assert row["paper"] == 0.897 and ref_row["paper"] == 0.717  # Table 4's values beside ours
    # the diagnostic is one seed's (the record says which), and the notes say so rather than imply a mean
    diag = record["diagnostics"]["rec"]
    assert row["diagnostic"] == diag["h2"]["delta_pct"]
    assert f"computed on seed {diag['seed']}'s predictions" in " ".join(summary["notes"])

    figure = out / summary["figures"][0]["file"]
    assert figure.suffix == ".svg" and "% of queries that match" in figure.read_text()
    assert "| 65% | 100% | recommendation | joint |" in (out / "table.md").read_text()
    assert (out / "site" / "index.html").is_file()
    text = capsys.readouterr().out
    assert "Summary:" in text and "Leaderboard:" in text

    # a second run trains nothing again and writes the same summary
    before = (out / "experiment.json").read_bytes()
    assert experiment(subs, out, "sim2", "--levels", "0", "1", "--samples", "1", "0.65", "--seeds", "0", "1") == 0
    assert fit_calls(subs, "joint", "sim2:q_match=1,sample=0.65", seed=1) == 1
    assert json.loads(before)["rows"] == json.loads((out / "experiment.json").read_bytes())["rows"]


def test_sim3_sweep_under_distinct_decoding_with_a_larger_test_set(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "exp"
    make(subs, "gen_s", popularity="search")
    make(subs, "joint", popularity="rec", references={"search": "gen_s"})  # ranks differently: a test with variance
    assert experiment(subs, out, "sim3", "--levels", "1", "--samples", "1", "--seeds", "0", "1",
                      "--decoding", "distinct", "--dataset-param", "test_queries=3", "--no-site") == 0
    summary = json.loads((out / "experiment.json").read_text())
    joint = next(r for r in summary["rows"] if r["model"] == "joint")
    assert joint["record"] == "results/sim3__test_queries-3/joint@distinct/record.json"  # pairs_in_qrels=1: default
    record = json.loads((out / joint["record"]).read_text())
    assert record["protocol"]["params"]["decoding"] == "distinct"
    assert record["metrics"]["search"]["R@10"]["n"] == 30  # three test queries per topic
    assert joint["distinct"] == record["lists"]["search"]["mean_distinct_items"] == 10.0
    # MDE: (z_0.975 + z_0.8) standard errors, the standard error read back from the test's 95% interval
    from scipy import stats

    test = next(t for t in record["significance"]["search"] if t["metric"] == "R@10")
    se = (test["ci_high"] - test["ci_low"]) / 2 / stats.t.ppf(0.975, test["n"] - 1)
    assert joint["mde"] == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * se)
    notes = " ".join(summary["notes"])
    assert "Decoding: distinct" in notes and "Power: MDE is the smallest difference" in notes
    assert experiment(subs, out, "sim3", "--levels", "1", "--dataset-param", "pairs_in_qrels=0.5") == 2
    assert experiment(subs, out, "sim3", "--levels", "1", "--dataset-param", "test_queries") == 2


def test_sim1_sweep_puts_the_compiled_kl_on_the_x_axis_and_runs_both_references(subs, tmp_path):
    out = tmp_path / "exp"
    assert experiment(subs, out, "sim1", "--levels", "0", "1", "--samples", "1", "--no-site") == 0
    summary = json.loads((out / "experiment.json").read_text())
    assert {r["task"] for r in summary["rows"]} == {"recommendation", "search"}
    row = next(r for r in summary["rows"]
               if r["level"] == "shuffle 1" and r["model"] == "joint" and r["task"] == "recommendation")
    record = json.loads((out / row["record"]).read_text())
    assert row["kl"] == record["dataset"]["stats"]["kld_sr"] and row["kl"] > 0
    zero = next(r for r in summary["rows"] if r["level"] == "shuffle 0" and r["model"] == "joint")
    assert zero["kl"] < row["kl"]
    assert [f["file"] for f in summary["figures"]] == ["figures/sim1-rec.svg", "figures/sim1-search.svg"]
    assert row["diagnostic"] == record["diagnostics"]["rec"]["h1"]["all"]["delta_pct"]  # H1's ΔPop %


def test_sim1_summary_gives_the_slope_of_the_gain_on_kl_with_its_interval(subs, tmp_path):
    from scipy import stats

    out = tmp_path / "exp"
    assert experiment(subs, out, "sim1", "--levels", "0", "0.5", "1", "--samples", "1", "--no-site") == 0
    summary = json.loads((out / "experiment.json").read_text())
    joint = [r for r in summary["rows"] if r["model"] == "joint" and r["task"] == "search"]
    fit = stats.linregress([r["kl"] for r in joint], [r["delta"] for r in joint])
    half = stats.t.ppf(0.975, 1) * fit.stderr
    note = next(n for n in summary["notes"] if n.startswith("Slope of the search gain"))
    assert f"{fit.slope:+.4f} per nat (95% CI {fit.slope - half:+.4f} to {fit.slope + half:+.4f}" in note
    assert "3 levels" in note and "H1 predicts a negative slope" in note


def test_cap_runs_a_capped_variant_per_cap_with_its_own_config_and_workdir(subs, tmp_path):
    out = tmp_path / "exp"
    assert experiment(subs, out, "cap", "-d", "sim1", "--caps", "2", "50", "--tasks", "rec", "--no-site") == 0
    summary = json.loads((out / "experiment.json").read_text())
    assert [(r["model"], r["cap"]) for r in summary["rows"]] == [
        ("gen_r", "no search data"), ("joint", "none"),
        ("joint (search capped at 2/item)", 2), ("joint (search capped at 50/item)", 50)]
    record = json.loads((out / summary["rows"][2]["record"]).read_text())
    assert record["submission"]["name"] == "joint-cap-search2"
    assert any(n.startswith("Power: MDE is the smallest difference in R@10") for n in summary["notes"])
    assert record["submission"]["config"]["params"]["cap_per_item"] == {"search": 2}
    assert record["submission"]["config"]["references"] == {"rec": "gen_r"}
    assert record["significance"]["rec"][0]["reference"] == "gen_r"
    # the variant trained in its own work folder, with the cap among its params
    from harness.runner import Runner

    joint = load_submission(subs / "joint")
    capped = variant(joint, suffix="cap-search2", display_suffix="(search capped at 2/item)", params={"cap_per_item": {"search": 2}},
                     references={"rec": "gen_r"})
    with CompiledDataset.open("sim1") as ds:
        base_dir, capped_dir = Runner(joint, out_dir=out).workdir(ds, 0), Runner(capped, out_dir=out).workdir(ds, 0)
    assert base_dir != capped_dir
    assert json.loads((capped_dir / "params.json").read_text())["cap_per_item"] == {"search": 2}
    assert "cap_per_item" not in json.loads((base_dir / "params.json").read_text())
    assert (out / "figures" / "cap-rec.svg").is_file()


def test_projection_measures_cluster_purity_in_embedding_space(subs, tmp_path):
    out = tmp_path / "exp"
    assert experiment(subs, out, "projection", "-d", "sim2", "--method", "pca", "--no-site") == 0
    summary = json.loads((out / "experiment.json").read_text())
    rows = {r["model"]: r for r in summary["rows"]}
    assert list(rows) == ["gen_r", "gen_s", "joint"]
    assert rows["gen_r"]["purity"] == 1.0  # its embeddings are its clusters: every neighbour is a cluster-mate
    assert rows["gen_r"]["chance"] == pytest.approx(5 / 29)  # SIM2: 5 clusters of 6 items
    assert rows["joint"]["purity"] < 0.6  # random vectors
    # Figure 3's claim tested: per-item purity (seed-averaged), joint against Gen_R, paired over the 30 items
    assert rows["joint"]["delta"] == pytest.approx(rows["joint"]["purity"] - 1.0)
    assert rows["joint"]["p"] < 0.05
    assert "delta" not in rows["gen_r"]
    assert any(n.startswith("joint against gen_r: cluster purity") for n in summary["notes"])
    assert len(summary["figures"]) == 2
    assert "coloured by cluster" in (out / summary["figures"][0]["file"]).read_text()


# A large random start (the same for every model of a seed) and a small learned change: the joint model's change is
# its items' clusters, Gen_R's is noise. The raw embeddings are all at chance; the change tells them apart.
CHANGE_ADAPTER = ADAPTER + """
    def _start(self):
        return np.random.default_rng(self.seed).normal(size=(len(self.order), 8)) * 100

    def item_embeddings(self):
        if self.params.get("learns_clusters"):
            change = np.eye(8)[self.cluster % 8]
        else:
            change = np.random.default_rng(self.seed + 100).normal(size=(len(self.order), 8))
        return self._start() + 0.01 * change

    def initial_item_embeddings(self):
        return self._start()
"""


def test_projection_measures_the_purity_of_what_training_changed(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "exp"
    for name, extra, refs in (("gen_r", "", None), ("gen_s", "", None),
                              ("joint", "learns_clusters = true\n", {"rec": "gen_r", "search": "gen_s"})):
        make(subs, name, popularity="rec", references=refs, extra=extra)
        (subs / name / "adapter.py").write_text(CHANGE_ADAPTER)
    assert experiment(subs, out, "projection", "-d", "sim2", "--method", "pca", "--seeds", "0", "1", "--no-site") == 0
    summary = json.loads((out / "experiment.json").read_text())
    rows = {r["model"]: r for r in summary["rows"]}
    assert rows["joint"]["purity_change"] == 1.0 and rows["gen_r"]["purity_change"] < 0.6
    assert rows["joint"]["delta_change"] == pytest.approx(1.0 - rows["gen_r"]["purity_change"])
    assert rows["joint"]["p_change"] < 0.05
    assert abs(rows["joint"]["purity"] - rows["gen_r"]["purity"]) < 0.2  # the random start dominates the raw ones
    assert rows["joint"]["moved"] == pytest.approx(0.01 / (100 * np.sqrt(8)), rel=0.5)  # |change| / |start|
    notes = " ".join(summary["notes"])
    assert "cluster purity of the learned change (trained - initial embedding)" in notes and "at 80% power" in notes
    assert "Training moved the item embeddings by" in notes
    assert "Learned change of the item ID embeddings" in (out / summary["figures"][2]["file"]).read_text()
    assert [f["file"] for f in summary["figures"]][2:] == ["figures/projection-sim2-change-rec-popularity.svg",
                                                           "figures/projection-sim2-change-search-popularity.svg"]


def test_projection_says_which_unit_to_retrain_when_embeddings_are_missing(subs, tmp_path):
    out = tmp_path / "exp"
    assert experiment(subs, out, "projection", "-d", "sim2", "--method", "pca", "--no-site") == 0
    missing = out / "results" / "sim2" / "gen_s" / "units" / "seed0" / "item_embeddings.npy"
    missing.unlink()
    with pytest.raises(HarnessError, match="item_embeddings.npy: missing: gen_s's unit finished without storing"):
        from harness.experiments.projection import run_projection

        run_projection(Context(out=out, submissions_dir=subs, joint="joint"), dataset="sim2", method="pca")


def test_bad_options_are_clear_errors(subs, tmp_path, capsys):
    out = tmp_path / "exp"
    assert experiment(subs, out, "sim4") == 2
    assert "experiment 'sim4' is unknown; known: sim1, sim2, sim3, cap, ids, projection" in capsys.readouterr().err
    assert experiment(subs, out, "sim2", "--levels", "1.5") == 2
    assert "sim2 levels (q_match): 1.5 is outside [0, 1]" in capsys.readouterr().err
    assert experiment(subs, out, "cap", "--caps", "0") == 2
    assert "caps [0] must be positive integers" in capsys.readouterr().err
    assert main(["experiment", "run", "sim2", "--submissions", str(subs), "--joint", "gen_s", "--out", str(out)]) == 2
    assert "names no [references]" in capsys.readouterr().err


def test_neighbour_measures_by_hand():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=float)
    nn = nearest_neighbours(x, 1)
    assert nn[:, 0].tolist() == [1, 0, 3, 2]
    cluster = np.array([0, 0, 1, 1])
    assert cluster_purity(nn, cluster) == 1.0
    assert chance_purity(cluster) == pytest.approx(1 / 3)
    # ranks of log popularity (4, 3, 1, 2) against the neighbours' (3, 4, 2, 1): rho = 1 - 6 * 4 / (4 * 15)
    assert popularity_locality(nn, np.array([100, 90, 1, 2])) == pytest.approx(0.6)


def _reference_record(value: float, tokenizer: str | None, task: str = "rec") -> ResultRecord:
    record = synthetic_record(LINEUP[3], "sim2", seeds=(0,))  # pop_rec: serves both tasks, R@10 among its metrics
    record["metrics"][task]["R@10"] = {"mean": value, "n": 100, "per_seed": {"0": value}}
    record["units"][0]["adapter_info"] = {"backbone": {"tokenizer_hash": tokenizer} if tokenizer else {}}
    return ResultRecord.from_dict(record, source="reference record")


def test_reference_notes_say_why_a_reference_moves_along_a_sweep():
    from harness.experiments.sweeps import SWEEPS, _reference_note

    sim1, sim2 = SWEEPS["sim1"], SWEEPS["sim2"]
    same = [_reference_record(0.76, "sha256:a")] * 3
    assert "as it must" in _reference_note(sim2, "rec", "Gen_R", 1.0, same, "R@10")
    # SIM1 shuffles search popularity: Gen_S's own data changes, a different model per level by design.
    moved = [_reference_record(v, "sha256:a", "search") for v in (0.29, 0.34, 0.38)]
    note = _reference_note(sim1, "search", "Gen_S", 1.0, moved, "R@10")
    assert "data the level changes" in note and "0.2900 to 0.3800" in note
    # Gen_R's data is the same, but the shared tokenizer was trained on the changed search text.
    by_tokenizer = [_reference_record(0.405, "sha256:a"), _reference_record(0.400, "sha256:b"),
                    _reference_record(0.405, "sha256:a")]
    note = _reference_note(sim1, "rec", "Gen_R", 1.0, by_tokenizer, "R@10")
    assert "2 different tokenizers" in note and "same tokenizer scored identically" in note
    # Same tokenizer, different score: said plainly.
    unexplained = [_reference_record(0.405, "sha256:a"), _reference_record(0.400, "sha256:a")]
    assert "not bit-reproducible" in _reference_note(sim1, "rec", "Gen_R", 1.0, unexplained, "R@10")
    # A tokenizer that explains some levels but not others (same hash, two scores) explains nothing.
    mixed = [_reference_record(0.405, "sha256:a"), _reference_record(0.401, "sha256:a"),
             _reference_record(0.400, "sha256:b")]
    assert "not bit-reproducible" in _reference_note(sim1, "rec", "Gen_R", 1.0, mixed, "R@10")
    # Records without a tokenizer hash (another adapter) cannot be explained by one.
    untracked = [_reference_record(0.405, None), _reference_record(0.400, None)]
    assert "not bit-reproducible" in _reference_note(sim1, "rec", "Gen_R", 1.0, untracked, "R@10")


def test_projection_numbers_are_means_over_seeds(subs, tmp_path):
    out = tmp_path / "exp"
    assert experiment(subs, out, "projection", "-d", "sim2", "--method", "pca", "--no-site", "--seeds", "0", "1") == 0
    summary = json.loads((out / "experiment.json").read_text())
    joint = next(r for r in summary["rows"] if r["model"] == "joint")
    assert joint["seeds"] == 2
    with CompiledDataset.open("sim2") as ds:
        cluster = ds.catalogue().cluster
    per_seed = [cluster_purity(nearest_neighbours(np.random.default_rng(seed).normal(size=(len(cluster), 4)), 5), cluster)
                for seed in (0, 1)]
    assert per_seed[0] != per_seed[1]
    assert joint["purity"] == pytest.approx(np.mean(per_seed))
    assert f"joint {per_seed[0]:.3f}, {per_seed[1]:.3f}" in " ".join(summary["notes"])
