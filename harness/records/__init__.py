"""The standard result format: a versioned JSON Schema, the validator every reader uses, the typed record every
reader goes through (ResultRecord), and the record folder (record.json, per-query Parquet, TREC run and qrels
files). pyarrow loads only when a Parquet or TREC file is read or written; polars only with harness.records.per_query
(per-query values as one long table and every aggregation of them), which its users import themselves."""

from harness.records.files import (
    PER_QUERY_FILE,
    RECORD_FILE,
    files_block,
    per_query_table,
    qrels_file_name,
    read_per_query,
    read_record_folder,
    run_file_name,
    write_record_folder,
    write_trec_qrels,
    write_trec_run,
)
from harness.records.record import ResultRecord
from harness.records.validate import SCHEMA_VERSION, load_schema, read_record, validate_record

__all__ = [
    "PER_QUERY_FILE",
    "RECORD_FILE",
    "ResultRecord",
    "SCHEMA_VERSION",
    "files_block",
    "load_schema",
    "per_query_table",
    "qrels_file_name",
    "read_per_query",
    "read_record",
    "read_record_folder",
    "run_file_name",
    "validate_record",
    "write_record_folder",
    "write_trec_qrels",
    "write_trec_run",
]
