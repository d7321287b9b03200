"""The pandas reference for the compile benchmark (bench/bench_data.py): a straightforward pandas + numpy
implementation of the same protocol as `python -m harness data build logs --path FOLDER`, doing the whole job.

    PYTHONPATH=. python bench/pandas_compile.py FOLDER OUT     # prints the table counts as JSON

It reads the same `logs` folder (Parquet, docs/logs-schema.md: interactions, queries, qrels and the optional
items), checks what a careful script would (required columns, no missing values, unique query and item ids,
qrels naming known queries, interactions and qrels naming known items), applies the compiler's rules
(docs/datasets.md "The rules, in order"; harness/data/stages.py): items in both tasks, users with at least
min_user_interactions kept interactions, sequences ordered by (timestamp, seq, row in the file), the
recommendation examples (test t, validation t-1, training t-2 down to 3), the md5-ordered query split,
evaluation targets that occur in training, popularity and head flags, the Table 3 statistics, and writes the
six canonical tables as Parquet files into OUT (plus counts.json). Ids are keys as text, as the harness stores
them (an integer id is its decimal digits), and dense ids follow the keys' text order, as in the harness; only
the distinct keys are turned into text, not every row.

The counts it returns have the shape of the harness manifest's `counts`, so the benchmark can check that both
sides produced the same tables. Default split parameters only (the benchmark's case); no fingerprint (that is
the harness's own feature, not part of the protocol).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")


def _key_text(values: np.ndarray) -> np.ndarray:
    """Distinct ids as the harness's text keys (integers as decimal digits)."""
    return np.asarray([str(v) for v in values], dtype=object)


def _encode(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes int64 per row, distinct keys as text); codes index the keys, -1 for a missing value."""
    codes, uniques = pd.factorize(column, sort=False)
    return codes.astype(np.int64, copy=False), _key_text(np.asarray(uniques))


def _text_rank(keys: np.ndarray) -> np.ndarray:
    """rank[i] = position of keys[i] in ascending text (code point) order."""
    order = np.argsort(keys.astype(str), kind="stable")
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    return rank


def _fail(message: str) -> None:
    raise SystemExit(f"pandas reference: {message}")


def _read(folder: Path, name: str, required: list[str], optional: list[str] = ()) -> pd.DataFrame | None:
    path = folder / f"{name}.parquet"
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    have = set(pq.read_schema(path).names)
    missing = [c for c in required if c not in have]
    if missing:
        _fail(f"{path.name}: missing column {missing[0]}")
    frame = pd.read_parquet(path, columns=required + [c for c in optional if c in have])
    for c in required:
        if frame[c].isna().any():
            _fail(f"{path.name}: column {c} has missing values")
    return frame


def compile_logs(folder: Path, out: Path, *, split_seed: int = 0, valid_frac: float = 0.1, test_frac: float = 0.1,
                 min_user_interactions: int = 5, head_fraction: float = 0.01) -> dict:
    from harness.data.stats import table3_row

    folder, out = Path(folder), Path(out)
    inter = _read(folder, "interactions", ["user_id", "item_id", "timestamp"], ["seq"])
    queries = _read(folder, "queries", ["query_id", "text"], ["split"])
    qrels = _read(folder, "qrels", ["query_id", "item_id"])
    items_in = _read(folder, "items", ["item_id", "title"], ["text"])
    if inter is None or queries is None or qrels is None:
        _fail(f"{folder}: interactions, queries and qrels are required")

    # --- queries and qrels: unique query ids, qrels of known queries, duplicates counted once
    q_keys = _key_text(queries["query_id"].to_numpy())
    if pd.Series(q_keys).duplicated().any():
        _fail("queries.parquet: a query_id appears twice")
    if "split" in queries and not queries["split"].isin(SPLITS).all():
        _fail("queries.parquet: split must be train, valid or test")
    q_index = pd.Index(queries["query_id"])
    qr_q = q_index.get_indexer(qrels["query_id"])
    if (qr_q < 0).any():
        _fail("qrels.parquet: a query_id is not in queries")

    # --- item keys: one code space for interactions, qrels and the items file
    item_columns = [inter["item_id"], qrels["item_id"]] + ([items_in["item_id"]] if items_in is not None else [])
    all_items = pd.concat(item_columns, ignore_index=True)
    item_codes, item_keys = _encode(all_items)
    n_int = len(inter)
    int_item, qr_item = item_codes[:n_int], item_codes[n_int:n_int + len(qrels)]
    if items_in is not None:
        file_items = item_codes[n_int + len(qrels):]
        if len(np.unique(file_items)) != len(file_items):
            _fail("items.parquet: an item_id appears twice")
        known = np.zeros(len(item_keys), bool)
        known[file_items] = True
        if not known[int_item].all() or not known[qr_item].all():
            _fail("an item_id of interactions or qrels is not in items.parquet")

    pairs = np.unique(qr_q.astype(np.int64) * len(item_keys) + qr_item)  # deduplicated (query, item)
    qr_q, qr_item = pairs // len(item_keys), pairs % len(item_keys)

    # --- items in both tasks, dense ids in key text order
    in_rec = np.zeros(len(item_keys), bool)
    in_rec[int_item] = True
    in_search = np.zeros(len(item_keys), bool)
    in_search[qr_item] = True
    kept_codes = np.flatnonzero(in_rec & in_search)
    kept_codes = kept_codes[np.argsort(item_keys[kept_codes].astype(str), kind="stable")]
    item_id_of = np.full(len(item_keys), -1, np.int64)
    item_id_of[kept_codes] = np.arange(len(kept_codes))
    n_items = len(kept_codes)

    # --- sequences: interactions on kept items, users with enough of them, ordered by (ts, seq, row)
    item_id = item_id_of[int_item]
    keep = item_id >= 0
    user_codes, user_keys = _encode(inter["user_id"])
    user_rank = _text_rank(user_keys)
    user = user_rank[user_codes[keep]]
    ts = inter["timestamp"].to_numpy(np.int64)[keep]
    tie = None  # without seq, the (stable) sort keeps the file order
    if "seq" in inter:
        tie = (inter["seq"].to_numpy(np.int64) * (1 << 32) + np.arange(n_int, dtype=np.int64))[keep]
    item_id = item_id[keep]
    del inter, user_codes
    enough = np.bincount(user)[user] >= min_user_interactions
    user, ts, item_id = user[enough], ts[enough], item_id[enough]
    tie = None if tie is None else tie[enough]
    # np.lexsort is stable, so rows of equal keys keep their file order (the row tie-break)
    order = np.lexsort((ts, user) if tie is None else (tie, ts, user))
    user, ts, item_seq = user[order], ts[order], item_id[order]
    del order, item_id, enough
    users_sorted, user_idx = np.unique(user, return_inverse=True)
    length = np.bincount(user_idx).astype(np.int64)
    n_users = len(users_sorted)
    start = np.concatenate([[0], np.cumsum(length)[:-1]])
    pos = np.arange(len(user)) - start[user_idx] + 1
    t = length[user_idx]
    sequences = pd.DataFrame({"user_id": user_idx.astype(np.int32), "pos": pos.astype(np.int32),
                              "item_id": item_seq.astype(np.int32), "ts": ts})
    users = pd.DataFrame({"user_id": np.arange(n_users, dtype=np.int32),
                          "user_key": user_keys[np.argsort(user_rank)][users_sorted],
                          "length": length.astype(np.int32)})

    # --- recommendation examples: test t, valid t-1 (targets must be training targets), train t-2 .. 3
    pop_rec = np.bincount(item_seq[pos <= t - 2], minlength=n_items)
    train_target = np.zeros(n_items, bool)
    train_target[item_seq[(pos >= 3) & (pos <= t - 2)]] = True
    test_rows = np.flatnonzero(pos == t)
    valid_rows = np.flatnonzero(pos == t - 1)
    test_ok = test_rows[train_target[item_seq[test_rows]]]
    valid_ok = valid_rows[train_target[item_seq[valid_rows]]]
    train_len = np.maximum(length - 4, 0)
    train_user = np.repeat(np.arange(n_users), train_len)
    train_pos = np.arange(train_len.sum()) - np.repeat(np.cumsum(train_len) - train_len, train_len) + 3
    rec_examples = pd.DataFrame({
        "split": pd.Categorical.from_codes(
            np.repeat(np.array([2, 0, 1], np.int8), [len(test_ok), len(train_user), len(valid_ok)]), SPLITS),
        "user_id": np.concatenate([user_idx[test_ok], train_user, user_idx[valid_ok]]).astype(np.int32),
        "target_pos": np.concatenate([pos[test_ok], train_pos, pos[valid_ok]]).astype(np.int32),
    })

    # --- search: queries with a kept item; md5 split of the unassigned ones; eval qrels on training items
    k = item_id_of[qr_item] >= 0
    kq, ki = qr_q[k], item_id_of[qr_item[k]]
    kept_q = np.unique(kq)
    fixed = queries["split"].to_numpy(object)[kept_q] if "split" in queries else np.full(len(kept_q), None, object)
    unassigned = np.flatnonzero(pd.isna(fixed))
    n_un = len(unassigned)
    n_test = math.floor(Fraction(repr(test_frac)) * n_un + Fraction(1, 2))
    n_valid = min(math.floor(Fraction(repr(valid_frac)) * n_un + Fraction(1, 2)), n_un - n_test)
    keys_un = q_keys[kept_q[unassigned]]
    digests = [hashlib.md5(f"{split_seed}:{key}".encode()).hexdigest() for key in keys_un]
    order = unassigned[np.lexsort((keys_un.astype(str), np.asarray(digests)))]
    split = fixed.copy()
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_valid]] = "valid"
    split[order[n_test + n_valid:]] = "train"
    split_of = np.full(len(q_keys), None, object)
    split_of[kept_q] = split
    qsplit = split_of[kq]
    train_items = np.zeros(n_items, bool)
    train_items[ki[qsplit == "train"]] = True
    s = (qsplit == "train") | train_items[ki]
    sq, si = kq[s], ki[s]
    final_q = np.unique(sq)
    final_q = final_q[np.argsort(q_keys[final_q].astype(str), kind="stable")]
    query_id_of = np.full(len(q_keys), -1, np.int64)
    query_id_of[final_q] = np.arange(len(final_q))
    out_queries = pd.DataFrame({"query_id": np.arange(len(final_q), dtype=np.int32), "query_key": q_keys[final_q],
                                "text": queries["text"].to_numpy(object)[final_q], "split": split_of[final_q]})
    out_qrels = pd.DataFrame({"query_id": query_id_of[sq].astype(np.int32), "item_id": si.astype(np.int32)})
    out_qrels = out_qrels.sort_values(["query_id", "item_id"], kind="stable", ignore_index=True)

    # --- items: popularity per task over training, head = top ceil(head_fraction * n) by (pop desc, item_id)
    train_q = out_queries["split"].to_numpy() == "train"
    pop_search = np.bincount(out_qrels["item_id"].to_numpy()[train_q[out_qrels["query_id"].to_numpy()]],
                             minlength=n_items)
    head = max(1, math.ceil(Fraction(repr(head_fraction)) * n_items))
    ids = np.arange(n_items)
    head_rec = np.zeros(n_items, bool)
    head_rec[np.lexsort((ids, -pop_rec))[:head]] = True
    head_search = np.zeros(n_items, bool)
    head_search[np.lexsort((ids, -pop_search))[:head]] = True
    if items_in is not None:
        meta = pd.DataFrame({"code": item_codes[n_int + len(qrels):], "title": items_in["title"].to_numpy(object),
                             "text": items_in["text"].to_numpy(object) if "text" in items_in else None})
        meta["text"] = meta["text"].where(meta["text"].notna() & (meta["text"].astype(str).str.strip() != ""),
                                          meta["title"])
        meta = meta.set_index("code").reindex(kept_codes)
        title, text = meta["title"].fillna("").to_numpy(object), meta["text"].fillna("").to_numpy(object)
    else:
        title = text = np.full(n_items, "", object)
    out_items = pd.DataFrame({"item_id": ids.astype(np.int32), "item_key": item_keys[kept_codes], "title": title,
                              "text": text, "cluster": pd.array([None] * n_items, dtype="Int32"),
                              "pop_rec": pop_rec.astype(np.int64), "pop_search": pop_search.astype(np.int64),
                              "head_rec": head_rec, "head_search": head_search})

    stats = table3_row(pop_rec=pop_rec, pop_search=pop_search, n_users=n_users, n_interactions=len(sequences),
                       n_rec_items=len(np.unique(item_seq)), n_search_items=out_qrels["item_id"].nunique(),
                       n_queries=len(out_queries), n_qrels=len(out_qrels))

    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("items", out_items), ("users", users), ("sequences", sequences),
                        ("rec_examples", rec_examples), ("queries", out_queries), ("qrels", out_qrels)):
        frame.to_parquet(out / f"{name}.parquet", index=False)
    qsplit_final = out_queries["split"].to_numpy()
    result = {
        "items": n_items, "users": n_users, "sequences": len(sequences), "queries": len(out_queries),
        "qrels": len(out_qrels),
        "rec_examples": {"train": int(len(train_user)), "valid": int(len(valid_ok)), "test": int(len(test_ok))},
        "queries_by_split": {s_: int((qsplit_final == s_).sum()) for s_ in SPLITS},
        "qrels_by_split": {s_: int((qsplit_final[out_qrels["query_id"].to_numpy()] == s_).sum()) for s_ in SPLITS},
    }
    (out / "counts.json").write_text(json.dumps({"counts": result, "stats": stats}, indent=1))
    return result


if __name__ == "__main__":
    print(json.dumps(compile_logs(Path(sys.argv[1]), Path(sys.argv[2]))))
