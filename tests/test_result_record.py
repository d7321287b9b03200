"""ResultRecord: the one typed, read-only view of a result record that readers go through."""

import copy
import dataclasses
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.records import SCHEMA_VERSION, ResultRecord, read_record_folder, write_record_folder

DOC = Path(__file__).resolve().parents[1] / "docs" / "result-format.md"


def current_record() -> dict:
    """The complete example record (the current schema) published in docs/result-format.md."""
    (block,) = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return json.loads(block)


def old_record() -> dict:
    """A record as schema 1.0 wrote it: no `lists`, no `protocol.params.decoding`, no `measures` (Recall only), and
    none of the optional fields."""
    record = current_record()
    record["schema_version"] = "1.0"
    del record["lists"], record["diagnostics"], record["protocol"]["params"]["decoding"], record["measures"]
    for values in record["metrics"].values():
        for name in [name for name in values if not name.startswith("R@")]:
            del values[name]
    for key in ("kind", "adapter", "params", "config"):
        del record["submission"][key]
    for unit in record["units"]:
        del unit["timings"], unit["adapter_info"]
    return record


def write(path: Path, record: dict) -> Path:
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_reads_a_current_record(tmp_path):
    path = write(tmp_path / "record.json", current_record())
    record = ResultRecord.read(path)
    assert record.source == str(path)
    assert (record.schema_version, record.harness_version, record.git_commit) == (
        SCHEMA_VERSION, "0.1.0", "f5a53ff0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6")

    sub = record.submission
    assert (sub.name, sub.display_name, sub.kind, sub.adapter) == ("gen_rs", "Gen_R+S", "generative",
                                                                   "harness.generative.adapter:GenerativeAdapter")
    assert sub.tasks == ("rec", "search") and dict(sub.references) == {"rec": "gen_r", "search": "gen_s"}
    assert sub.params == {"backbone": "t5-small-scratch", "epochs": 20} and sub.config_hash.startswith("sha256:")
    assert record.dataset.name == "sim2:q_match=0.5" and record.dataset.headline_k == 10
    assert record.dataset.fingerprint.startswith("sha256:4a264f31")

    assert record.protocol_version == "1"
    params = record.params
    assert (params.ks, params.headline_k, params.decoding, params.depth) == ((1, 10), 10, "diverse-beam", 10)
    assert (params.test, params.alpha, params.correction) == ("paired-t", 0.05, "holm")

    assert record.seeds == (0, 1) and record.ok_seeds == (0,) and record.failed_seeds == (1,)
    ok, failed = record.units
    assert ok.ok and ok.error is None and ok.fit_s == 512.4 and dict(ok.retrieve_s) == {"rec": 3.1, "search": 1.2}
    assert ok.adapter_info == {"parameters": 6100000, "device": "cpu"}
    assert not failed.ok and failed.error.type == "RuntimeError" and "NaN" in failed.error.message
    assert failed.retrieve_s == {} and failed.timings == {"fit_s": 130.0}

    assert record.metric_tasks == ("rec", "search") and record.measures == ("R", "nDCG", "RR")
    assert record.metric("rec", "nDCG@10").mean == 0.1092
    value = record.metric("rec", "R@10")
    assert (value.mean, value.n, dict(value.per_seed)) == (0.187, 1000, {0: 0.187})
    assert record.metric("rec", "R@30") is None and record.metric("music", "R@10") is None
    assert record.lists["rec"].mean_distinct_items == 3.71 and record.lists["rec"].depth == 10
    test = record.significance_row("rec", "R@10")
    assert (test.reference, test.p_holm, test.significant) == ("gen_r", 0.0186, True)
    assert test.to_dict() == current_record()["significance"]["rec"][0]
    assert record.significance_row("rec", "R@30") is None and record.significance_row("music", "R@10") is None

    assert record.timing.finished_at == "2024-05-01T12:11:02.512+00:00" and record.timing.total_s == 662.5
    assert record.files.per_query == "per_query.parquet" and record.files.runs["rec"] == ("rec.seed0.run",)
    assert record.files.names() == {"per_query.parquet", "rec.seed0.run", "search.seed0.run", "rec.qrels",
                                    "search.qrels", "rec.head", "search.head"}
    assert dict(record.files.heads) == {"rec": "rec.head", "search": "search.head"}
    assert record.environment["python"] == "3.11.7" and record.diagnostics == {} and record.comparison_notes == ()


def test_a_schema_1_0_record_loads_with_the_defaults(tmp_path):
    record = ResultRecord.read(write(tmp_path / "record.json", old_record()))
    assert record.schema_version == "1.0"
    assert record.params.decoding == "diverse-beam"  # records before decodings were declared used the paper's
    assert "decoding" not in record.params.to_dict()  # ... which to_dict does not invent: it gives what was recorded
    assert record.lists == {} and record.measures == ("R",)
    assert record.submission.kind == "other" and record.submission.adapter is None
    assert record.submission.params == {} and record.submission.config == {}
    assert record.dataset.stats == {} and record.dataset.source is None and record.dataset.format_version == 1
    assert record.diagnostics == {} and record.comparison_notes == ()
    unit = record.units[0]
    assert unit.fit_s is None and unit.retrieve_s == {} and unit.timings == {} and unit.adapter_info == {}
    assert record.metric("rec", "R@10").mean == 0.187  # the numbers read as in a current record


def test_the_decoding_defaults_to_the_papers_for_records_before_decodings():
    old, distinct = old_record(), current_record()
    distinct["protocol"]["params"]["decoding"] = "distinct"
    assert ResultRecord.from_dict(old, source="old").params.decoding == "diverse-beam"
    assert ResultRecord.from_dict(distinct, source="new").params.decoding == "distinct"


def test_to_dict_round_trips_and_copies():
    data = current_record()
    record = ResultRecord.from_dict(data, source="example")
    assert record.to_dict() == data and json.loads(record.to_json()) == data
    assert ResultRecord.from_dict(record.to_dict(), source="elsewhere") == record  # equal: same contents
    assert pickle.loads(pickle.dumps(record)) == record
    assert pickle.loads(pickle.dumps(record)).metric("rec", "R@10") == record.metric("rec", "R@10")
    assert "files" not in record.without_files() and record.without_files()["seeds"] == [0, 1]

    out = record.to_dict()
    out["submission"]["name"] = "changed"
    data["seeds"].append(7)  # the dict it was built from
    assert record.submission.name == "gen_rs" and record.seeds == (0, 1) and record.to_dict() != data


def test_accessors_never_let_a_caller_change_the_record():
    record = ResultRecord.from_dict(current_record(), source="example")
    before = record.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.source = "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.submission.name = "x"
    for read_only in (record.submission.references, record.metrics, record.metrics["rec"],
                      record.metric("rec", "R@10").per_seed, record.lists, record.significance, record.environment,
                      record.files.runs, record.units[0].retrieve_s):
        with pytest.raises(TypeError):
            read_only["x"] = 1
    assert isinstance(record.seeds, tuple) and isinstance(record.units, tuple) and isinstance(record.params.ks, tuple)
    # Free-form JSON comes as a fresh copy each time: changing it changes nothing in the record.
    record.submission.config["params"]["epochs"] = 0
    record.submission.params["epochs"] = 0
    record.dataset.to_dict()["name"] = "x"
    record.params.to_dict()["ks"].append(30)
    record.units[0].adapter_info["device"] = "gpu"
    record.units[0].timings["retrieve_s"]["rec"] = 0
    record.significance_row("rec", "R@10").to_dict()["p"] = 1.0
    record.diagnostics["h1"] = {}
    assert record.to_dict() == before and record.submission.params["epochs"] == 20


def test_comparison_notes_are_typed_and_malformed_entries_left_out():
    data = current_record()
    data["diagnostics"] = {"comparison_notes": [
        {"task": "rec", "reference": "gen_r", "missing": True, "note": "every seed of reference 'gen_r' failed"},
        {"task": "search", "note": "compared over seeds [0]"},
        {"task": "rec", "note": 42}, "not an object", {"task": ["rec"], "note": "names no task"},
    ]}
    notes = ResultRecord.from_dict(data, source="example").comparison_notes
    assert [(n.task, n.missing, n.note) for n in notes] == [
        ("rec", True, "every seed of reference 'gen_r' failed"), ("search", False, "compared over seeds [0]"),
        (None, False, "names no task")]


def test_an_invalid_record_is_refused_with_the_file_named(tmp_path):
    data = current_record()
    data["units"][0]["status"] = "done"
    path = write(tmp_path / "record.json", data)
    with pytest.raises(HarnessError, match=re.escape(f"{path}: $.units[0].status: 'done' is not one of")):
        ResultRecord.read(path)
    with pytest.raises(HarnessError, match=r"^somewhere/record\.json: \$\.units\[0\]\.status"):
        ResultRecord.from_dict(data, source="somewhere/record.json")
    (tmp_path / "bad.json").write_text('{"schema_version": "1.2",\n  oops}')
    with pytest.raises(HarnessError, match=re.escape(f"{tmp_path / 'bad.json'}:2:3: not valid JSON")):
        ResultRecord.read(tmp_path / "bad.json")
    with pytest.raises(HarnessError, match=re.escape(f"{tmp_path / 'none.json'}: no such result record")):
        ResultRecord.read(tmp_path / "none.json")


def test_record_folders_read_and_write_result_records(tmp_path):
    data = current_record()
    data["files"] = {"per_query": None, "runs": {}, "qrels": {}}
    record = ResultRecord.from_dict(data, source="example")
    empty = {"per_query": None, "runs": {}, "qrels": {}, "item_keys": np.array([], dtype=object)}
    written = write_record_folder(tmp_path / "a", record, **empty)
    assert isinstance(written, ResultRecord) and written == record
    assert read_record_folder(tmp_path / "a") == record and read_record_folder(tmp_path / "a").source == str(
        tmp_path / "a" / "record.json")
    # A record read elsewhere names that folder's files: without_files() lets the writer fill in its own.
    elsewhere = copy.deepcopy(data)
    elsewhere["files"]["per_query"] = "per_query.parquet"
    moved = ResultRecord.from_dict(elsewhere, source="elsewhere")
    with pytest.raises(HarnessError, match=r"\$\.files: .* does not match the files given"):
        write_record_folder(tmp_path / "b", moved, **empty)
    assert write_record_folder(tmp_path / "b", moved.without_files(), **empty) == record
