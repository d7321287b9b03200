"""Reading a compiled dataset: the views adapters see (harness.data.views), never test targets in them.

    with CompiledDataset.open("ml-small") as ds:
        view = ds.train_view()                # training + validation, sequences cut before item t-1
        requests = ds.rec_requests("test")    # histories 1..t-1, no targets
        targets = ds.rec_targets("test")      # held by the harness, aligned with requests

The file is opened read-only and verified before anything reads it (harness.data.integrity: a file whose tables
no longer give its manifest's fingerprint, or that DuckDB cannot read, is refused naming the rebuild command);
arrays come out of DuckDB with fetchnumpy (no Python loops over rows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from harness import settings
from harness.data.integrity import open_verified
from harness.data.sources import SOURCES
from harness.data.spec import DatasetSpec
from harness.data.stats import stats_from_connection
from harness.data.views import Catalogue, RecExamples, SearchExamples, TrainView
from harness.errors import HarnessError

# Per recommendation split, which positions of a user's sequence a request may see: validation predicts
# t-1 so it sees 1..t-2 (also all that training sees), test predicts t and sees 1..t-1.
_VISIBLE_UNTIL = {"train": 2, "valid": 2, "test": 1}  # positions 1..length - k


def dataset_path(spec: DatasetSpec | str, cache_dir: str | os.PathLike | None = None) -> Path:
    """<cache>/datasets/<spec.slug>.duckdb"""
    spec = DatasetSpec.parse(spec) if isinstance(spec, str) else spec
    return settings.compiled_dir(cache_dir) / f"{spec.slug}.duckdb"


def resolve_file(spec_or_path: Any, cache_dir: Any = None) -> tuple[Path, str | None]:
    """(file, canonical spec text or None when given a path)."""
    if isinstance(spec_or_path, DatasetSpec):
        return dataset_path(spec_or_path, cache_dir), str(spec_or_path)
    text = str(spec_or_path)
    if isinstance(spec_or_path, os.PathLike) or text.endswith(".duckdb") or os.sep in text:
        return Path(text).expanduser(), None
    spec = DatasetSpec.parse(text)
    return dataset_path(spec, cache_dir), str(spec)


class CompiledDataset:
    """A compiled dataset file: manifest, catalogue, and the protocol's views."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, manifest: dict[str, Any]) -> None:
        self.path = path
        self._con = con
        self.manifest = manifest
        self.name: str = manifest["dataset"]
        self.fingerprint: str = manifest["fingerprint"]
        self.headline_k: int = int(manifest["headline_k"])
        self._catalogue: Catalogue | None = None
        self._sequences: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(cls, spec_or_path: DatasetSpec | str | os.PathLike, cache_dir: str | os.PathLike | None = None
             ) -> "CompiledDataset":
        path, spec_text = resolve_file(spec_or_path, cache_dir)
        if not path.is_file():
            if spec_text is None:
                raise HarnessError(f"compiled dataset file {path} does not exist")
            SOURCES.doc(DatasetSpec.parse(spec_text).name)  # an unknown name: "did you mean ...? available: ..."
            raise HarnessError(
                f"dataset {spec_text} is not compiled (no {path}); build it with "
                f"`python -m harness data build {spec_text}`"
                + (f" --cache-dir {cache_dir}" if cache_dir else "")
            )
        con, manifest, _ = open_verified(path, spec_text)  # refused if edited, damaged or of another format
        return cls(path, con, manifest)

    # -- context manager ------------------------------------------------------------------------

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "CompiledDataset":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CompiledDataset({self.name!r}, {self.fingerprint[:19]}..., {self.path})"

    # -- low level ------------------------------------------------------------------------------

    def _numpy(self, sql: str, params: list[Any] | None = None) -> dict[str, np.ndarray]:
        if params:
            return self._con.execute(sql, params).fetchnumpy()
        return self._con.sql(sql).fetchnumpy()

    def _user_keys(self) -> np.ndarray:
        return self._numpy("SELECT user_key FROM users ORDER BY user_id")["user_key"]

    def _ordered(self, table: str, columns: str, keys: tuple[str, ...], where: str = "",
                 params: list[Any] | None = None) -> dict[str, np.ndarray]:
        """Columns of `table` in ascending key order. Tables are stored in that order, so they are read as
        stored and the order is checked (cheap, vectorised); a sort happens only if the check fails."""
        sql = f"SELECT {columns} FROM {table} {where}"
        cols = self._numpy(sql, params)
        if not _strictly_ascending([np.asarray(cols[k]) for k in keys]):
            cols = self._numpy(sql + f" ORDER BY {', '.join(keys)}", params)
        return cols

    def _full_sequences(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lengths int64 [n_users], offsets int64 [n_users+1], items int32): every user's whole sequence."""
        if self._sequences is None:
            lengths = self._numpy("SELECT length::BIGINT AS n FROM users ORDER BY user_id")["n"].astype(np.int64)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            cols = self._ordered("sequences", "user_id, pos, item_id", ("user_id", "pos"))
            if len(cols["item_id"]) != offsets[-1]:
                raise HarnessError(f"{self.path}: sequences and users disagree; rebuild it with --force")
            self._sequences = (lengths, offsets, np.ascontiguousarray(cols["item_id"], dtype=np.int32))
        return self._sequences

    def _sequences_cut(self, keep_last: int) -> tuple[np.ndarray, np.ndarray]:
        """(offsets int64 [n_users+1], items int32): each user's sequence cut to positions 1..length-keep_last."""
        lengths, offsets, items = self._full_sequences()
        kept = np.maximum(lengths - keep_last, 0)
        new_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(kept, out=new_offsets[1:])
        # position (0-based) of every row within its user, compared with the user's cut
        within = np.arange(len(items), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        mask = within < np.repeat(kept, lengths)
        return new_offsets, items[mask]

    def _rec_examples(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user, history_len, target) int32 of one split, ordered by (user_id, target_pos)."""
        cols = self._ordered("rec_examples", "user_id, target_pos", ("user_id", "target_pos"),
                             "WHERE split = ?", [split])
        user = np.ascontiguousarray(cols["user_id"], dtype=np.int32)
        target_pos = np.asarray(cols["target_pos"], dtype=np.int64)
        _, offsets, items = self._full_sequences()
        target = items[offsets[user] + target_pos - 1]
        return user, (target_pos - 1).astype(np.int32), np.ascontiguousarray(target, dtype=np.int32)

    def _search(self, split: str, *, relevance: bool) -> SearchExamples:
        _check_split(split, ("train", "valid", "test"), "search")
        q = self._numpy("SELECT query_id, query_key, text FROM queries WHERE split = ? ORDER BY query_id", [split])
        query_id = np.ascontiguousarray(q["query_id"], dtype=np.int32)
        texts, keys = list(q["text"]), list(q["query_key"])
        if not relevance:
            return SearchExamples(query_id, texts, None, None, keys)
        offsets, items = self.search_qrels(split)
        return SearchExamples(query_id, texts, offsets, items, keys)

    # -- public views ---------------------------------------------------------------------------

    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            c = self._numpy(
                "SELECT item_key, title, text, cluster, pop_rec, pop_search, head_rec, head_search"
                " FROM items ORDER BY item_id"
            )
            cluster = c["cluster"]
            mask = np.ma.getmaskarray(cluster)
            cluster_arr = None if mask.all() else np.ma.filled(cluster, -1).astype(np.int32)
            self._catalogue = Catalogue(
                item_key=np.asarray(c["item_key"], dtype=object),
                title=list(c["title"]),
                text=list(c["text"]),
                pop_rec=np.asarray(c["pop_rec"], dtype=np.int64),
                pop_search=np.asarray(c["pop_search"], dtype=np.int64),
                head_rec=np.asarray(c["head_rec"], dtype=bool),
                head_search=np.asarray(c["head_search"], dtype=bool),
                cluster=cluster_arr,
            )
        return self._catalogue

    def train_view(self) -> TrainView:
        """Training and validation data. Every array holds positions 1..t-2 only: items t-1 and t (the
        validation and test targets) never reach the adapter through sequences; validation targets come as
        `rec_valid.target` for early stopping."""
        offsets, items = self._sequences_cut(_VISIBLE_UNTIL["train"])
        user_key = self._user_keys()
        train_user, train_len, train_target = self._rec_examples("train")
        valid_user, valid_len, valid_target = self._rec_examples("valid")
        return TrainView(
            dataset=self.name,
            fingerprint=self.fingerprint,
            catalogue=self.catalogue(),
            rec_train=RecExamples(offsets, items, train_user, train_len, train_target, user_key),
            rec_valid=RecExamples(offsets, items, valid_user, valid_len, valid_target, user_key),
            search_train=self._search("train", relevance=True),
            search_valid=self._search("valid", relevance=True),
            extra={"headline_k": self.headline_k},
        )

    def rec_requests(self, split: str) -> RecExamples:
        """Evaluation requests without targets, ordered by user_id; sequences cut to 1..target_pos-1."""
        _check_split(split, ("valid", "test"), "recommendation requests")
        offsets, items = self._sequences_cut(_VISIBLE_UNTIL[split])
        user, history_len, _ = self._rec_examples(split)
        return RecExamples(offsets, items, user, history_len, None, self._user_keys())

    def rec_targets(self, split: str) -> np.ndarray:
        """int32 targets aligned with rec_requests(split)."""
        _check_split(split, ("valid", "test"), "recommendation targets")
        return self._rec_examples(split)[2]

    def search_requests(self, split: str) -> SearchExamples:
        """Queries of a split without relevance, ordered by query_id."""
        return self._search(split, relevance=False)

    def search_qrels(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(rel_offsets int64 [n+1], rel_items int32) aligned with search_requests(split)."""
        _check_split(split, ("train", "valid", "test"), "search qrels")
        counts = self._numpy(
            """SELECT count(r.item_id)::BIGINT AS n FROM queries q LEFT JOIN qrels r ON r.query_id = q.query_id
               WHERE q.split = ? GROUP BY q.query_id ORDER BY q.query_id""",
            [split],
        )["n"]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        items = self._numpy(
            """SELECT r.item_id FROM qrels r JOIN queries q ON q.query_id = r.query_id
               WHERE q.split = ? ORDER BY r.query_id, r.item_id""",
            [split],
        )["item_id"]
        return offsets, np.ascontiguousarray(items, dtype=np.int32)

    def stats(self) -> dict[str, Any]:
        """The Table 3 row (harness.data.stats.table3_row), computed at compile time and kept in the manifest."""
        if "stats" in self.manifest:
            return dict(self.manifest["stats"])
        return stats_from_connection(self._con)


def _strictly_ascending(keys: list[np.ndarray]) -> bool:
    """Whether rows (k1, k2, ...) are in strictly ascending lexicographic order."""
    if len(keys[0]) < 2:
        return True
    result = None
    for key in reversed(keys):
        greater = key[1:] > key[:-1]
        result = greater if result is None else greater | ((key[1:] == key[:-1]) & result)
    return bool(result.all())


def _check_split(split: str, allowed: tuple[str, ...], what: str) -> None:
    if split not in allowed:
        raise HarnessError(f"{what}: split {split!r} is not one of {', '.join(allowed)}")
