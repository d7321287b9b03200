"""The result record schema and validator, the record folder writer/reader, and the TREC files."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import harness.records.files as files_module
from harness.errors import HarnessError
from harness.evaluation.comparison import paired_tests
from harness.io import process_start_time
from harness.metrics import Metric, recall_at_k, registry, score, standard_metrics
from harness.records.files import recover_record_folder
from harness.records.per_query import metrics_blocks, per_query_frame, query_means
from harness.records import (
    SCHEMA_VERSION,
    load_schema,
    per_query_table,
    read_per_query,
    read_record,
    read_record_folder,
    validate_record,
    write_record_folder,
    write_trec_qrels,
    write_trec_run,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "result-format.md"


def example_record() -> dict:
    """The complete example record published in docs/result-format.md."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/result-format.md should hold exactly one JSON example"
    return json.loads(blocks[0])


def _raises(record, *patterns):
    with pytest.raises(HarnessError) as info:
        validate_record(record, source="rec.json")
    message = str(info.value)
    assert message.startswith("rec.json: $"), message
    for pattern in patterns:
        assert pattern in message, message
    return message


# --- schema and validator ---------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12_and_versioned():
    import jsonschema

    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")
    assert SCHEMA_VERSION.split(".")[0] == "1" and re.match(
        schema["properties"]["schema_version"]["pattern"], SCHEMA_VERSION
    )
    assert schema["additionalProperties"] is False


def test_the_documented_example_is_valid():
    validate_record(example_record(), source="docs")


def test_a_minimal_record_is_valid():
    record = example_record()
    del record["diagnostics"]
    record["significance"] = {}
    record["metrics"] = {"rec": {}}
    record["units"] = []
    record["submission"] = {
        k: record["submission"][k] for k in ("name", "display_name", "tasks", "config_hash", "references")
    }
    record["harness"]["git_commit"] = None
    validate_record(record, source="min")


@pytest.mark.parametrize(
    "path, expected",
    [
        (("seeds",), "$: 'seeds' is a required property"),
        (("dataset", "fingerprint"), "$.dataset: 'fingerprint' is a required property"),
        (("protocol", "params", "headline_k"), "$.protocol.params: 'headline_k' is a required property"),
        (("metrics", "rec", "R@10", "n"), "$.metrics.rec['R@10']: 'n' is a required property"),
    ],
)
def test_missing_required_key_names_its_path(path, expected):
    record = example_record()
    parent = record
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    _raises(record, expected)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r.update(seeds="0"), "$.seeds: '0' is not of type 'array'"),
        (lambda r: r["metrics"]["rec"]["R@10"].update(n="1000"), "$.metrics.rec['R@10'].n"),
        (lambda r: r["units"][0].update(status="done"), "$.units[0].status"),
        (lambda r: r["dataset"].update(fingerprint="abc"), "$.dataset.fingerprint"),
        (lambda r: r["timing"].update(started_at="2024-05-01 12:00"), "$.timing.started_at"),
        (lambda r: r["metrics"]["rec"].update({"R@10/all": r["metrics"]["rec"]["R@10"]}), "$.metrics.rec"),
        (lambda r: r["metrics"].update(ads={}), "$.metrics"),
        (lambda r: r["significance"]["rec"][0].update(p=1.5), "$.significance.rec[0].p"),
        (lambda r: r["files"].update(per_query="../elsewhere.parquet"), "$.files.per_query"),
    ],
)
def test_wrong_type_or_value_names_its_path(mutate, expected):
    record = example_record()
    mutate(record)
    _raises(record, expected)


def test_failed_unit_needs_its_error_and_an_ok_unit_has_none():
    record = example_record()
    record["units"][1]["error"] = None
    _raises(record, "$.units[1].error")
    record = example_record()
    record["units"][0]["error"] = {"type": "X", "message": "m", "traceback": None}
    _raises(record, "$.units[0].error")


def test_unknown_top_level_field_is_named():
    record = example_record()
    record["calibration"] = {}
    message = _raises(record, "$: unknown field 'calibration'")
    assert "allows" in message  # a 1.0 record: probably a typo, list what is allowed


def test_unknown_field_from_a_newer_minor_names_both_versions():
    record = example_record()
    record["schema_version"] = "1.4"
    record["calibration"] = {}
    _raises(record, "unknown field 'calibration'", "uses schema 1.4", "knows 1.3")


def test_lists_are_checked_against_the_seeds_and_the_depth():
    record = example_record()
    record["lists"] = {"rec": {"depth": 10, "mean_distinct_items": 4.0, "per_seed": {"0": 4.0}}}
    validate_record(record, source="rec.json")
    record["lists"]["rec"]["per_seed"]["0"] = 11.0
    _raises(record, "$.lists.rec.per_seed['0']", "11.0 distinct items is outside [0, depth 10]")
    record["lists"]["rec"]["per_seed"] = {"7": 4.0}
    _raises(record, "$.lists.rec.per_seed", "seed 7 is not in $.seeds")
    record["lists"] = {"music": {"depth": 10, "mean_distinct_items": 4.0, "per_seed": {}}}
    _raises(record, "$.lists")
    record = example_record()
    record["protocol"]["params"]["decoding"] = "greedy"
    _raises(record, "$.protocol.params.decoding")


def test_unknown_nested_field_in_a_closed_object():
    record = example_record()
    record["significance"]["rec"][0]["effect_size"] = 0.2
    _raises(record, "$.significance.rec[0]: unknown field 'effect_size'")


def test_newer_minor_without_unknown_fields_is_read():
    record = example_record()
    record["schema_version"] = "1.4"
    validate_record(record, source="x")


@pytest.mark.parametrize(
    "version, expected",
    [("2.0", "uses schema 2.0"), ("0.9", "uses schema 0.9"), ("1", "MAJOR.MINOR"), (1.0, "MAJOR.MINOR")],
)
def test_other_major_versions_are_refused(version, expected):
    record = example_record()
    record["schema_version"] = version
    _raises(record, "$.schema_version", expected)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda r: r["significance"]["rec"][0].update(reference_fingerprint="sha256:" + "0" * 64),
            "$.significance.rec[0].reference_fingerprint",
        ),
        (lambda r: r["significance"]["rec"][0].update(reference="pop_rec"), "$.significance.rec[0].reference"),
        (lambda r: r["units"][1].update(seed=7), "$.units[1].seed"),
        (lambda r: r["units"][1].update(seed=0), "more than one unit"),
        (lambda r: r["submission"].update(tasks=["rec"]), "$.metrics.search"),
        (lambda r: r["metrics"]["rec"]["R@1"]["per_seed"].update({"5": 0.1}), "$.metrics.rec['R@1'].per_seed"),
        (lambda r: r["protocol"]["params"].update(headline_k=30), "$.protocol.params.headline_k"),
    ],
)
def test_cross_field_rules(mutate, expected):
    record = example_record()
    mutate(record)
    _raises(record, expected)


def test_several_problems_are_counted():
    record = example_record()
    del record["seeds"]
    del record["timing"]
    _raises(record, "more problems")


def test_read_record_names_file_and_line_of_bad_json(tmp_path):
    path = tmp_path / "record.json"
    path.write_text('{\n  "schema_version": "1.0",\n  "harness": ,\n}\n')
    with pytest.raises(HarnessError, match=re.escape(f"{path}:3:")):
        read_record(path)
    path.write_text(json.dumps(example_record()).replace('"total_s": 662.5', '"total_s": NaN'))
    with pytest.raises(HarnessError, match="NaN"):
        read_record(path)
    with pytest.raises(HarnessError, match="no such result record"):
        read_record(tmp_path / "missing.json")
    path.write_text(json.dumps(example_record()))
    assert read_record(path) == example_record()


# --- the record folder ------------------------------------------------------------------------------

ITEM_KEYS = np.array([f"item{i}" for i in range(40)], dtype=object)
IS_HEAD = np.arange(40) < 4


def _evaluation(seed: int, n_queries: int = 30, depth: int = 10):
    rng = np.random.default_rng(seed)
    rel = [rng.choice(40, size=rng.integers(1, 4), replace=False) for _ in range(n_queries)]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rel])]).astype(np.int64)
    items = np.concatenate(rel).astype(np.int64)
    rankings = np.full((n_queries, depth), -1, dtype=np.int64)
    for q, r in enumerate(rel):
        if q % 7 == 3:
            continue  # an empty ranking
        pool = rng.permutation(np.unique(np.concatenate([r, rng.choice(40, size=depth, replace=False)])))
        length = int(rng.integers(1, depth + 1))
        rankings[q, :length] = pool[:length]
    qids = [f"u{q}" for q in range(n_queries)]
    return qids, rankings, offsets, items


def _same_targets_inputs(seeds=(0, 1)):
    """A 'rec'-only record with its per-query table, runs and qrels: each seed ranks the same queries."""
    import pyarrow as pa

    qids, _, offsets, items = _evaluation(seed=100)
    ks = [1, 10]
    rng = np.random.default_rng(0)
    tables, runs, values_by_seed = [], {}, {}
    for seed in seeds:
        rankings = np.stack([rng.permutation(40)[:10] for _ in qids])
        rankings[3] = -1  # an empty ranking
        values = recall_at_k(rankings, offsets, items, IS_HEAD, ks)
        tables.append(per_query_table("rec", seed, qids, values))
        runs[seed] = (qids, rankings)
        values_by_seed[seed] = values
    record = example_record()
    record["protocol"]["params"]["ks"] = ks
    record["seeds"] = list(seeds)
    record["units"] = [{"seed": s, "status": "ok", "error": None} for s in seeds]
    record["submission"]["tasks"] = ["rec"]
    record["submission"]["references"] = {}
    table = pa.concat_tables(tables)
    record["metrics"] = metrics_blocks(per_query_frame(table))
    record["significance"] = {}
    record["lists"] = {"rec": record["lists"]["rec"]}
    del record["files"]
    return record, table, {"rec": runs}, {"rec": (qids, offsets, items)}, values_by_seed


def test_write_then_read_a_complete_folder(tmp_path):
    record, table, runs, qrels, _ = _same_targets_inputs()
    written = write_record_folder(
        tmp_path / "out", record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS
    )
    assert written.to_dict()["files"] == {
        "per_query": "per_query.parquet",
        "runs": {"rec": ["rec.seed0.run", "rec.seed1.run"]},
        "qrels": {"rec": "rec.qrels"},
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "per_query.parquet",
        "rec.qrels",
        "rec.seed0.run",
        "rec.seed1.run",
        "record.json",
    ]
    assert read_record_folder(tmp_path / "out") == written
    assert read_per_query(tmp_path / "out").equals(table)


def test_record_json_is_written_last(tmp_path, monkeypatch):
    record, table, runs, qrels, _ = _same_targets_inputs()
    order = []
    for name in ("_write_parquet", "write_trec_run", "write_trec_qrels", "write_json_atomic"):
        original = getattr(files_module, name)

        def spy(path, *args, _original=original, **kwargs):
            order.append(Path(path).name)
            return _original(path, *args, **kwargs)

        monkeypatch.setattr(files_module, name, spy)
    write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    assert order[-1] == "record.json" and len(order) == 5


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failure_while_writing_keeps_the_previous_record_and_files(tmp_path, monkeypatch):
    record, table, runs, qrels, _ = _same_targets_inputs()
    write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    before = _snapshot(tmp_path)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files_module, "write_trec_qrels", broken)  # after the Parquet and run files
    record["timing"]["total_s"] = 1.0
    with pytest.raises(OSError, match="disk full"):
        write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    assert _snapshot(tmp_path) == before  # nothing lost, nothing half-new, no staged leftovers
    read_record_folder(tmp_path)


def test_where_folders_cannot_be_exchanged_a_failure_while_swapping_leaves_no_record_json(tmp_path, monkeypatch):
    record, table, runs, qrels, _ = _same_targets_inputs()
    write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    monkeypatch.setattr(files_module, "exchange_paths", lambda a, b: False)  # another OS or file system
    calls = []
    real_move = files_module._move_into_place

    def flaky_move(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("power cut")
        return real_move(src, dst)

    monkeypatch.setattr(files_module, "_move_into_place", flaky_move)
    with pytest.raises(OSError, match="power cut"):
        write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    monkeypatch.setattr(files_module, "_move_into_place", real_move)
    assert not (tmp_path / "record.json").exists()  # never an old record beside new files
    with pytest.raises(HarnessError, match="interrupted"):
        read_record_folder(tmp_path)
    # the next write cleans the staged leftovers and completes the folder
    write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    read_record_folder(tmp_path)


def test_the_folder_is_exchanged_whole_and_keeps_what_is_not_the_records(tmp_path):
    record, table, runs, qrels, _ = _same_targets_inputs()
    folder = tmp_path / "sim1" / "sub"
    write_record_folder(folder, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    (folder / "units" / "seed0").mkdir(parents=True)
    (folder / "units" / "seed0" / "unit.json").write_text("{}")
    inode = (folder / "record.json").stat().st_ino
    write_record_folder(folder, record, per_query=table, runs={}, qrels=qrels, item_keys=ITEM_KEYS)
    assert (folder / "record.json").stat().st_ino != inode and read_record_folder(folder).files.runs == {}
    assert (folder / "units" / "seed0" / "unit.json").read_text() == "{}"  # carried over
    assert not list(folder.glob("*.run"))  # the previous record's runs went with it
    assert [p.name for p in folder.parent.iterdir()] == ["sub"]  # no staging folder left


def test_what_a_killed_writer_moved_aside_comes_back(tmp_path):
    """A writer killed between moving units/ into its staging folder and the exchange: the folder still holds the
    previous complete record; the next writer (or the runner) moves units/ back and removes the staging folder."""
    record, table, runs, qrels, _ = _same_targets_inputs()
    folder = tmp_path / "sim1" / "sub"
    write_record_folder(folder, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    dead = folder.parent / ".sub.record-999999999-1-abcd1234"  # no such process
    (dead / "units" / "seed0").mkdir(parents=True)
    (dead / "units" / "seed0" / "unit.json").write_text("{}")
    (dead / "record.json").write_text("{}")  # the new record it was about to put in place: not kept
    live = folder.parent / f".sub.record-{os.getpid()}-{process_start_time(os.getpid()) or 0}-live0000"
    live.mkdir()  # a writer still at work is left alone
    recover_record_folder(folder)
    assert (folder / "units" / "seed0" / "unit.json").is_file() and not dead.exists() and live.exists()
    read_record_folder(folder)  # the previous record, complete


def test_an_invalid_record_writes_nothing(tmp_path):
    record, table, runs, qrels, _ = _same_targets_inputs()
    record["seeds"] = "0"
    with pytest.raises(HarnessError, match=re.escape("record.json: $.seeds")):
        write_record_folder(tmp_path / "out", record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    assert not (tmp_path / "out").exists()


def test_files_entry_must_match_what_is_written(tmp_path):
    record, table, runs, qrels, _ = _same_targets_inputs()
    record["files"] = {"per_query": None, "runs": {}, "qrels": {}}
    with pytest.raises(HarnessError, match=re.escape("$.files")):
        write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)


def test_rewriting_with_fewer_seeds_drops_stale_files_only(tmp_path):
    record, table, runs, qrels, values_by_seed = _same_targets_inputs()
    (tmp_path / "notes.txt").write_text("someone else's file")
    write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    record["seeds"], record["units"] = [0], record["units"][:1]
    record["metrics"] = metrics_blocks(per_query_frame(table.slice(0, 30)))  # seed 0's rows
    write_record_folder(
        tmp_path, record, per_query=None, runs={"rec": {0: runs["rec"][0]}}, qrels=qrels, item_keys=ITEM_KEYS
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "rec.qrels", "rec.seed0.run", "record.json"]
    assert read_record_folder(tmp_path).files.per_query is None


def test_missing_named_file_is_reported(tmp_path):
    record, table, runs, qrels, _ = _same_targets_inputs()
    write_record_folder(tmp_path, record, per_query=table, runs=runs, qrels=qrels, item_keys=ITEM_KEYS)
    (tmp_path / "rec.seed1.run").unlink()
    with pytest.raises(HarnessError, match="rec.seed1.run"):
        read_record_folder(tmp_path)


def test_keys_with_whitespace_are_refused(tmp_path):
    keys = ITEM_KEYS.copy()
    keys[5] = "item 5"
    with pytest.raises(HarnessError, match="'item 5'"):
        write_trec_run(tmp_path / "x.run", ["q0"], np.array([[5, 1]]), keys, "tag")
    with pytest.raises(HarnessError, match="query id"):
        write_trec_qrels(tmp_path / "x.qrels", ["q 0"], np.array([0, 1]), np.array([1]), ITEM_KEYS)
    with pytest.raises(HarnessError, match="outside the catalogue"):
        write_trec_run(tmp_path / "x.run", ["q0"], np.array([[40]]), ITEM_KEYS, "tag")


# --- per-query Parquet ------------------------------------------------------------------------------


def test_per_query_table_stores_out_of_segment_as_null_and_round_trips(tmp_path):
    values = {Metric("R", 1, "head"): np.array([np.nan, 0.5]), Metric("R", 1): np.array([0.0, 1.0])}
    table = per_query_table("search", 3, ["a", "b"], values)
    assert table.column_names == ["task", "seed", "qid", "R@1", "R@1/head"]
    assert table["R@1/head"].null_count == 1
    assert query_means(per_query_frame(table)).select("query", "R@1/head").rows() == [("a", None), ("b", 0.5)]
    with pytest.raises(HarnessError, match="R@1"):
        per_query_table("search", 3, ["a"], values)


def test_seed_averages_pair_by_query_id():
    _, table, _, _, values_by_seed = _same_targets_inputs()
    ours = query_means(per_query_frame(table))
    assert ours.get_column("query").to_list() == [f"u{q}" for q in range(30)]  # the file's order
    for metric in standard_metrics([1, 10]):
        direct = (values_by_seed[0][metric] + values_by_seed[1][metric]) / 2
        np.testing.assert_array_equal(ours.get_column(str(metric)).to_numpy(), direct)
    reference = query_means(per_query_frame(table.slice(0, 30)))  # seed 0 only
    # the evaluation stage pairs the two tables on the query id, whatever their order
    shuffled = reference.sample(fraction=1.0, shuffle=True, seed=0)
    tests, missing = paired_tests(ours, shuffled, [Metric("R", 10)], alpha=0.05, source="x", reference_source="y")
    assert missing == [] and tests[0].mean == np.mean(ours.get_column("R@10").to_numpy())
    assert tests[0].reference_mean == np.mean(values_by_seed[0][Metric("R", 10)])
    tests, missing = paired_tests(ours, reference, [Metric("nDCG", 10)], alpha=0.05, source="x", reference_source="y")
    assert tests == [] and missing == [Metric("nDCG", 10)]
    shorter = query_means(per_query_frame(table.slice(0, 29)))
    with pytest.raises(HarnessError, match="x and y: they score different queries"):
        paired_tests(ours, shorter, [Metric("R", 10)], alpha=0.05, source="x", reference_source="y")


def test_bad_per_query_file_is_reported(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pytest.raises(HarnessError, match="no per-query file"):
        read_per_query(tmp_path)
    pq.write_table(
        pa.table({"task": ["rec"], "seed": [0], "qid": ["a"], "Recall": [0.5]}), tmp_path / "per_query.parquet"
    )
    with pytest.raises(HarnessError, match="'Recall'"):
        read_per_query(tmp_path)
    (tmp_path / "per_query.parquet").write_bytes(b"not parquet")
    with pytest.raises(HarnessError, match="cannot read"):
        read_per_query(tmp_path)


# --- TREC files re-scored by ir_measures --------------------------------------------------------------


@pytest.mark.parametrize("segment", ["all", "head", "torso"])
@pytest.mark.parametrize("measure", sorted(registry()))
def test_trec_files_rescored_with_ir_measures_match_every_measure(tmp_path, segment, measure):
    ir_measures = pytest.importorskip("ir_measures")
    qids, rankings, offsets, items = _evaluation(seed=7, n_queries=60)
    write_trec_run(tmp_path / "r.run", qids, rankings, ITEM_KEYS, "mytag")
    write_trec_qrels(tmp_path / "r.qrels", qids, offsets, items, ITEM_KEYS)
    head_keys = set(ITEM_KEYS[IS_HEAD])
    keep = {"all": lambda d: True, "head": lambda d: d in head_keys, "torso": lambda d: d not in head_keys}[segment]
    qrels = [q for q in ir_measures.read_trec_qrels(str(tmp_path / "r.qrels")) if keep(q.doc_id)]
    run = list(ir_measures.read_trec_run(str(tmp_path / "r.run")))
    ks = [1, 5, 10, 20]
    ours = score(rankings, offsets, items, IS_HEAD, ks, [measure])
    theirs = {
        (m.query_id, m.measure.params["cutoff"]): m.value
        for m in ir_measures.iter_calc([ir_measures.parse_measure(f"{measure}@{k}") for k in ks], qrels, run)
    }
    scored = {q for q, _ in theirs}
    for k in ks:
        column = ours[Metric(measure, k, segment)]
        assert {qids[i] for i in np.flatnonzero(~np.isnan(column))} == scored
        for i, qid in enumerate(qids):
            if qid in scored:
                assert column[i] == pytest.approx(theirs[qid, k], abs=1e-12), (qid, k)


def test_trec_run_format(tmp_path):
    write_trec_run(
        tmp_path / "r.run", ["q1", "q2", "q3"], np.array([[3, 1, -1], [-1, -1, -1], [0, 2, 4]]), ITEM_KEYS, "pop"
    )
    assert (tmp_path / "r.run").read_text().splitlines() == [
        "q1 Q0 item3 1 3 pop",
        "q1 Q0 item1 2 2 pop",
        "q3 Q0 item0 1 3 pop",
        "q3 Q0 item2 2 2 pop",
        "q3 Q0 item4 3 1 pop",
    ]
    write_trec_qrels(tmp_path / "r.qrels", ["q1", "q2"], np.array([0, 2, 3]), np.array([3, 9, 1]), ITEM_KEYS)
    assert (tmp_path / "r.qrels").read_text().splitlines() == ["q1 0 item3 1", "q1 0 item9 1", "q2 0 item1 1"]
