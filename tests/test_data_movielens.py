"""MovieLens sources: ml-small against known rows and a plain-Python re-implementation of the protocol,
ml-25m on a generated fixture zip in the exact GroupLens layout, and every bad-input path of fetching."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import zipfile
from collections import Counter, defaultdict
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pytest

from harness.data import fetch
from harness.data.compile import compile_dataset
from harness.data.sources.movielens import ML_SMALL, NO_GENRE, normalise_query
from harness.data.stats import table3_row
from harness.data.store import CompiledDataset
from harness.errors import HarnessError

ML_SMALL_MD5 = "31a303aabbc519bd33d025e44d6c2570"


# ---------------------------------------------------------------------------------------------------
# Query normalisation


@pytest.mark.parametrize("raw, expected", [
    ("Sci-Fi", "sci-fi"),
    ("  Highly   quotable ", "highly quotable"),
    ('"funny"', "funny"),
    ("dark comedy!!", "dark comedy"),
    ("...twist ending", "twist ending"),
    ("Oscar (Best Picture)", "oscar (best picture)"),  # balanced bracket kept
    ("(500) days", "(500) days"),
    ("unbalanced)", "unbalanced"),
    ("ＢＢＣ\u00a0ｆｉｌｍ", "bbc film"),  # NFKC: full-width letters, no-break space
    ("!!!", ""),
    ("80's", "80's"),
    ('quoted "tag"', 'quoted "tag"'),
    ("'80s", "80s"),
    ("(b)", "(b)"),
])
def test_normalise_query(raw, expected):
    assert normalise_query(raw) == expected


# ---------------------------------------------------------------------------------------------------
# ml-small: one build per session


@pytest.fixture(scope="session")
def ml_small(ml_small_zip):
    compile_dataset("ml-small", data_dir=ml_small_zip.parent, allow_download=False)
    with CompiledDataset.open("ml-small") as ds:
        yield ds


def _first_middle_last(values: list) -> tuple:
    return len(values), values[0], values[len(values) // 2], values[-1]


def test_ml_small_known_rows(ml_small):
    """ir_datasets style: exact counts and the first, middle and last row of each split."""
    ds = ml_small
    m = ds.manifest
    assert m["files"] == [{"name": "ml-latest-small.zip", "md5": ML_SMALL_MD5, "bytes": 978202}]
    assert m["notes"]["archive_verified"] is True
    assert m["headline_k"] == 30
    assert m["counts"]["rec_examples"] == {"train": 98350, "valid": 590, "test": 586}
    assert m["counts"]["queries_by_split"] == {"train": 1179, "valid": 147, "test": 147}
    cat = ds.catalogue()
    key = cat.item_key
    assert len(cat) == 9691
    assert (key[0], cat.title[0], cat.text[0]) == (
        "1", "Toy Story (1995)", "Toy Story (1995) | Adventure, Animation, Children, Comedy, Fantasy")
    assert (key[4845], cat.title[4845]) == ("4067", "Untamed Heart (1993)")
    assert (key[-1], cat.text[-1]) == ("99992", "Shadow Dancer (2012) | Crime, Drama, Thriller")
    assert (cat.pop_rec[0], cat.pop_search[0], cat.head_rec[0], cat.head_search[0]) == (215, 7, True, False)
    assert cat.head_rec.sum() == cat.head_search.sum() == 97  # ceil(0.01 * 9691)
    assert key[np.argmax(cat.pop_rec)] == "356"  # Forrest Gump
    assert key[np.argmax(cat.pop_search)] == "296"  # Pulp Fiction (many user tags)

    requests, targets = ds.rec_requests("test"), ds.rec_targets("test")
    users = requests.user_key[requests.user]
    test_rows = [(u, int(h) + 1, key[t]) for u, h, t in zip(users, requests.history_len, targets)]
    assert _first_middle_last(test_rows) == (586, ("1", 232, "2492"), ("371", 41, "1884"), ("99", 53, "555"))
    valid = ds.rec_requests("valid")
    valid_rows = [(u, int(h) + 1, key[t]) for u, h, t in
                  zip(valid.user_key[valid.user], valid.history_len, ds.rec_targets("valid"))]
    assert _first_middle_last(valid_rows) == (590, ("1", 231, "2012"), ("373", 99, "305"), ("99", 52, "380"))
    view = ds.train_view()
    train = view.rec_train
    train_rows = [(train.user_key[u], int(h) + 1) for u, h in zip(train.user, train.history_len)]
    assert _first_middle_last(train_rows) == (98350, ("1", 3), ("398", 11), ("99", 51))

    assert _first_middle_last(list(ds.search_requests("test").query_key)) == (
        147, "1920s", "jean reno", "zooey deschanel")
    assert _first_middle_last(list(ds.search_requests("valid").query_key)) == (
        147, "a dingo ate my baby", "leonardo dicaprio", "zombies")
    q_idx, items = view.search_train.pairs()
    pairs = [(view.search_train.query_key[q], key[i]) for q, i in zip(q_idx, items)]
    assert _first_middle_last(pairs) == (
        22393, ("06 oscar nominated best movie - animation", "31658"), ("drama", "160980"), ("zither", "1212"))


def test_ml_small_stats_row(ml_small):
    row = ml_small.stats()
    assert row["rec_items"] == 9691 and row["rec_users"] == 610 and row["rec_interactions"] == 100790
    assert row["rec_density"] == pytest.approx(100790 / (610 * 9691))
    assert row["search_items"] == 9437 and row["search_queries"] == 1473 and row["search_qrels"] == 25147
    assert row["search_avg_rel"] == pytest.approx(25147 / 1473)
    assert row["rec_gini"] == pytest.approx(0.716405, abs=1e-6)
    assert row["search_gini"] == pytest.approx(0.322653, abs=1e-6)
    assert row["ks_sr"] == pytest.approx(0.600041, abs=1e-6)
    assert row["kld_sr"] == pytest.approx(0.673112, abs=1e-6)
    assert row["kld_rs"] == pytest.approx(0.709730, abs=1e-6)


def reference_ml_small(zip_path: Path, seed: int = 0) -> dict:
    """The whole protocol again, in plain Python over the CSVs: an independent check of the SQL."""
    z = zipfile.ZipFile(zip_path)

    def read(member):
        return list(csv.DictReader(io.TextIOWrapper(z.open(f"ml-latest-small/{member}"), encoding="utf-8")))

    movies, ratings, tags = read("movies.csv"), read("ratings.csv"), read("tags.csv")
    rel = defaultdict(set)
    for m in movies:
        for g in m["genres"].split("|"):
            if g != NO_GENRE and normalise_query(g):
                rel[normalise_query(g)].add(m["movieId"])
    for t in tags:
        if normalise_query(t["tag"]):
            rel[normalise_query(t["tag"])].add(t["movieId"])
    items = sorted({r["movieId"] for r in ratings} & set().union(*rel.values()))
    kept = set(items)
    by_user = defaultdict(list)
    for r in ratings:
        if r["movieId"] in kept:
            by_user[r["userId"]].append((int(r["timestamp"]), int(r["movieId"]), r["movieId"]))
    seqs = {u: [m for *_, m in sorted(v)] for u, v in by_user.items() if len(v) >= 5}
    train_targets = {m for s in seqs.values() for m in s[2:len(s) - 2]}
    pop_rec = Counter(m for s in seqs.values() for m in s[:len(s) - 2])
    queries = {q: r & kept for q, r in rel.items() if r & kept}
    order = sorted(queries, key=lambda q: (hashlib.md5(f"{seed}:{q}".encode()).hexdigest(), q))
    n_test = math.floor(Fraction("0.1") * len(order) + Fraction(1, 2))
    split = {q: "test" if i < n_test else "valid" if i < 2 * n_test else "train" for i, q in enumerate(order)}
    train_items = set().union(*(r for q, r in queries.items() if split[q] == "train"))
    qrels = {q: r if split[q] == "train" else r & train_items for q, r in queries.items()}
    qrels = {q: r for q, r in qrels.items() if r}
    pop_search = Counter(m for q, r in qrels.items() if split[q] == "train" for m in r)
    return {
        "items": items,
        "seqs": seqs,
        "test": {u: s[-1] for u, s in seqs.items() if s[-1] in train_targets},
        "valid": {u: s[-2] for u, s in seqs.items() if s[-2] in train_targets},
        "n_train": sum(max(len(s) - 4, 0) for s in seqs.values()),
        "split": {q: split[q] for q in qrels},
        "qrels": qrels,
        "pop_rec": np.array([pop_rec[i] for i in items]),
        "pop_search": np.array([pop_search[i] for i in items]),
    }


def test_ml_small_matches_plain_python_reference(ml_small, ml_small_zip):
    ref = reference_ml_small(ml_small_zip)
    ds = ml_small
    cat = ds.catalogue()
    key = cat.item_key
    assert list(key) == ref["items"]
    assert np.array_equal(cat.pop_rec, ref["pop_rec"])
    assert np.array_equal(cat.pop_search, ref["pop_search"])
    for split in ("valid", "test"):
        req = ds.rec_requests(split)
        got = {req.user_key[u]: key[t] for u, t in zip(req.user, ds.rec_targets(split))}
        assert got == ref[split]
        cut = 1 if split == "test" else 2
        for i in (0, len(req) // 2, len(req) - 1):
            user = req.user_key[req.user[i]]
            assert list(key[req.history(i)]) == ref["seqs"][user][:-cut]
    assert len(ds.train_view().rec_train) == ref["n_train"]
    got_split, got_qrels = {}, {}
    for split in ("train", "valid", "test"):
        s = ds.search_requests(split)
        offsets, items = ds.search_qrels(split)
        for i, q in enumerate(s.query_key):
            got_split[q] = split
            got_qrels[q] = set(key[items[offsets[i]:offsets[i + 1]]])
    assert got_split == ref["split"]
    assert got_qrels == ref["qrels"]
    n_qrels = sum(len(r) for r in ref["qrels"].values())
    expected = table3_row(pop_rec=ref["pop_rec"], pop_search=ref["pop_search"], n_users=len(ref["seqs"]),
                          n_interactions=sum(len(s) for s in ref["seqs"].values()),
                          n_rec_items=len({m for s in ref["seqs"].values() for m in s}),
                          n_search_items=len(set().union(*ref["qrels"].values())),
                          n_queries=len(ref["qrels"]), n_qrels=n_qrels)
    assert ds.stats() == pytest.approx(expected)


def test_ml_small_build_is_deterministic(ml_small, ml_small_zip, tmp_path):
    again = compile_dataset("ml-small", data_dir=ml_small_zip.parent, allow_download=False,
                            dest=tmp_path / "again.duckdb")
    assert not again.skipped
    assert again.fingerprint == ml_small.fingerprint
    seeded = compile_dataset("ml-small:split_seed=1", data_dir=ml_small_zip.parent, allow_download=False,
                             dest=tmp_path / "seed1.duckdb")
    assert seeded.fingerprint != ml_small.fingerprint


def test_ml_small_rejects_parameters(tmp_path, ml_small_zip):
    with pytest.raises(HarnessError, match="unknown parameter.*genome_min.*takes no parameters"):
        compile_dataset("ml-small:genome_min=0.5", data_dir=ml_small_zip.parent, dest=tmp_path / "x.duckdb")


# ---------------------------------------------------------------------------------------------------
# ml-25m on a generated fixture in the exact layout (ml-25m/ folder; the same CSV headers as GroupLens)

N_MOVIES = 12


def fixture_csvs() -> dict[str, str]:
    """Tiny CSVs in ml-25m's layout: 12 movies, 8 users with 6 ratings each, tags and genome scores."""
    movies = ["movieId,title,genres"] + [
        f'{m},"Movie {m}, The ({1990 + m})",{"Drama|Comedy" if m % 2 else "Action"}' for m in range(1, N_MOVIES)
    ] + [f"{N_MOVIES},Lost Film (2000),{NO_GENRE}"]
    ratings = ["userId,movieId,rating,timestamp"]
    for u in range(1, 9):
        for j in range(6):
            ratings.append(f"{u},{(u + 2 * j) % N_MOVIES + 1},{(j % 5) + 1}.0,{1000 + 10 * j}")
    tags = ["userId,movieId,tag,timestamp", '1,1,"Classic!",5', "2,3,classic,6", "3,5,Space  Opera,7",
            '4,12,"quoted ""tag""",8']
    genome_tags = ["tagId,tag", "1,classic", "2,atmospheric", "3,space opera"]
    scores = ["movieId,tagId,relevance"]
    for m in range(1, N_MOVIES + 1):
        scores += [f"{m},1,{0.95 if m in (2, 4) else 0.1}", f"{m},2,{0.85 if m in (6, 7, 8) else 0.5}",
                   f"{m},3,{0.79 if m == 9 else 0.02}"]
    return {"movies.csv": movies, "ratings.csv": ratings, "tags.csv": tags, "genome-tags.csv": genome_tags,
            "genome-scores.csv": scores, "links.csv": ["movieId,imdbId,tmdbId"], "README.txt": ["fixture"]}


def make_ml25m_zip(path: Path, replace: dict[str, str] | None = None, drop: str | None = None) -> Path:
    files = {name: "\n".join(lines) + "\n" for name, lines in fixture_csvs().items()}
    files.update(replace or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-25m/", "")
        for name, text in files.items():
            if name != drop:
                zf.writestr(f"ml-25m/{name}", text)
    return path


def test_ml25m_fixture_builds_with_genome_queries(tmp_path):
    archive = make_ml25m_zip(tmp_path / "ml-25m.zip")
    out = compile_dataset("ml-25m:min_user_interactions=3", path=archive, dest=tmp_path / "a.duckdb")
    m = out.manifest
    assert m["params"] == {"genome_min": 0.8}
    assert m["notes"]["archive_verified"] is False
    assert m["files"][0]["md5"] == fetch.md5_file(archive)
    assert m["notes"]["rows_read"]["ml-25m/genome-scores.csv"] == 3 * N_MOVIES
    assert m["notes"]["raw_queries_by_origin"] == {"genome": 2, "genre": 3, "tag": 3}
    con = duckdb.connect(str(out.path), read_only=True)
    relevant = defaultdict(set)
    for q, item in con.execute("SELECT q.query_key, i.item_key FROM queries q JOIN qrels USING (query_id)"
                               " JOIN items i USING (item_id)").fetchall():
        relevant[q].add(item)
    con.close()
    # genome 'classic' (>= 0.8 for movies 2, 4) merges with the user tags 'Classic!' (1) and 'classic' (3)
    raw = CompiledDataset.open(out.path)
    queries = {q for s in ("train", "valid", "test") for q in raw.search_requests(s).query_key}
    raw.close()
    assert "classic" in queries and "atmospheric" in queries
    assert "space opera" in queries  # from the user tag only: genome relevance 0.79 < 0.8
    assert 'quoted "tag"' in queries
    # a stricter threshold changes the data and the fingerprint
    strict = compile_dataset("ml-25m:genome_min=0.9,min_user_interactions=3", path=archive,
                             dest=tmp_path / "b.duckdb")
    assert strict.manifest["notes"]["raw_qrels_by_origin"]["genome"] == 2  # only classic (2, 4)
    assert out.manifest["notes"]["raw_qrels_by_origin"]["genome"] == 5  # classic 2, 4 + atmospheric 6, 7, 8
    assert strict.fingerprint != out.fingerprint


def test_ml25m_genome_threshold_and_params_are_checked(tmp_path):
    archive = make_ml25m_zip(tmp_path / "ml-25m.zip")
    with pytest.raises(HarnessError, match=r"genome_min='1.5' is not a number in \[0, 1\]"):
        compile_dataset("ml-25m:genome_min=1.5", path=archive, dest=tmp_path / "x.duckdb")
    with pytest.raises(HarnessError, match="genome_min='x' is not a number"):
        compile_dataset("ml-25m:genome_min=x", path=archive, dest=tmp_path / "x.duckdb")
    with pytest.raises(HarnessError, match="unknown parameter.*colour"):
        compile_dataset("ml-25m:colour=red", path=archive, dest=tmp_path / "x.duckdb")


def test_ml25m_from_data_dir_is_checked_against_the_pin(tmp_path):
    """A fixture dropped into the data dir under the official name is not the official archive."""
    make_ml25m_zip(tmp_path / "ml-25m.zip")
    with pytest.raises(HarnessError, match=r"checksum mismatch for .*ml-25m.zip: expected MD5 "
                                           r"6b51fb2759a8657d3bfcbfc42b592ada, found [0-9a-f]{32}"):
        compile_dataset("ml-25m", data_dir=tmp_path, dest=tmp_path / "x.duckdb")


# ---------------------------------------------------------------------------------------------------
# Bad input: each a HarnessError naming the file, nothing left behind


def assert_no_build(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if ".duckdb" in p.name]


@pytest.mark.parametrize("replace, drop, message", [
    ({"ratings.csv": "userId,movieId,rating,timestamp\n1,2,4.0,100\n1,3,x,100\n"}, None,
     r"ml-25m.zip:ml-25m/ratings.csv line 3: malformed CSV .*1,3,x,100"),
    ({"ratings.csv": "userId,movieId,rating,timestamp\n1,2,4.0,100\n1,3\n"}, None,
     r"ratings.csv line 3: malformed CSV .*Expected Number of Columns: 4 Found: 2"),
    ({"movies.csv": 'movieId,title,genres\n1,"Toy Story,Comedy\n'}, None,
     r"movies.csv line 2: malformed CSV .*unterminated quote"),
    ({"tags.csv": "user,movie,tag,timestamp\n"}, None, r"ml-25m/tags.csv line 1: header is 'user,movie,tag,timestamp'"),
    ({}, "genome-tags.csv", r"member ml-25m/genome-tags.csv is missing"),
])
def test_malformed_archive_contents(tmp_path, replace, drop, message):
    archive = make_ml25m_zip(tmp_path / "ml-25m.zip", replace=replace, drop=drop)
    with pytest.raises(HarnessError, match=message):
        compile_dataset("ml-25m", path=archive, dest=tmp_path / "x.duckdb")
    assert_no_build(tmp_path)


def test_truncated_zip(tmp_path):
    good = make_ml25m_zip(tmp_path / "good.zip").read_bytes()
    truncated = tmp_path / "ml-25m.zip"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(HarnessError, match=r"ml-25m.zip is truncated or not a valid zip"):
        compile_dataset("ml-25m", path=truncated, dest=tmp_path / "x.duckdb")
    assert_no_build(tmp_path)


def test_corrupt_member_fails_its_crc(tmp_path):
    archive = tmp_path / "ml-25m.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for name, lines in fixture_csvs().items():
            zf.writestr(f"ml-25m/{name}", "\n".join(lines) + "\n")
    data = bytearray(archive.read_bytes())
    at = data.index(b"userId,movieId,rating")
    data[at + 30] ^= 0x01  # flip one bit inside ratings.csv
    archive.write_bytes(bytes(data))
    with pytest.raises(HarnessError, match=r"ml-25m.zip is truncated or not a valid zip.*CRC"):
        compile_dataset("ml-25m", path=archive, dest=tmp_path / "x.duckdb")


def test_missing_archive_offline_says_what_to_put_where(tmp_path):
    with pytest.raises(HarnessError) as err:
        compile_dataset("ml-small", data_dir=tmp_path / "data", allow_download=False, dest=tmp_path / "x.duckdb")
    text = str(err.value)
    assert "put ml-latest-small.zip (MD5 31a303aabbc519bd33d025e44d6c2570) in " + str(tmp_path / "data") in text
    assert "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip" in text
    with pytest.raises(HarnessError,
                       match=r"ml-25m.zip not found in .*\(it is missing\).*MD5 6b51fb2759a8657d3bfcbfc42b592ada"):
        compile_dataset("ml-25m", data_dir=tmp_path, allow_download=True, dest=tmp_path / "x.duckdb")


def test_checksum_mismatch_names_expected_and_found(tmp_path):
    bad = tmp_path / "ml-latest-small.zip"
    bad.write_bytes(b"not the archive")
    found = hashlib.md5(b"not the archive").hexdigest()
    with pytest.raises(HarnessError, match=f"expected MD5 {ML_SMALL_MD5}, found {found}"):
        compile_dataset("ml-small", data_dir=tmp_path, allow_download=False, dest=tmp_path / "x.duckdb")


def test_download_when_missing(tmp_path, monkeypatch, ml_small_zip):
    """The network is mocked: _open_url serves the real bytes, and the file lands verified."""
    payload = ml_small_zip.read_bytes()
    calls = []

    def fake_open(url):
        calls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(fetch, "_open_url", fake_open)
    data_dir = tmp_path / "data"
    path, md5 = fetch.locate(fetch.downloads()["ml-latest-small.zip"], data_dir, allow_download=True)
    assert calls == ["https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"]
    assert path == data_dir / "ml-latest-small.zip" and md5 == ML_SMALL_MD5
    assert sorted(p.name for p in data_dir.iterdir()) == ["ml-latest-small.zip"]


def test_download_with_wrong_bytes_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_open_url", lambda url: io.BytesIO(b"an error page"))
    data_dir = tmp_path / "data"
    with pytest.raises(HarnessError, match=f"expected MD5 {ML_SMALL_MD5}, found "):
        fetch.locate(fetch.downloads()["ml-latest-small.zip"], data_dir, allow_download=True)
    assert list(data_dir.iterdir()) == []


def test_unreachable_network_is_reported_as_offline(tmp_path, monkeypatch):
    def refuse(url):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(fetch, "_open_url", refuse)
    with pytest.raises(HarnessError, match=r"downloading it failed \(Network is unreachable\); offline\? put "
                                           r"ml-latest-small.zip \(MD5 31a303aabbc519bd33d025e44d6c2570\) in "):
        fetch.locate(fetch.downloads()["ml-latest-small.zip"], tmp_path, allow_download=True)
    assert list(tmp_path.iterdir()) == []


def test_ml_small_source_is_registered():
    from harness.data.sources import SOURCES

    assert SOURCES.load("ml-small") is ML_SMALL
    assert SOURCES.load("ml-25m").headline_k == 30


def test_up_to_date_check_follows_the_archive(tmp_path, ml_small_zip):
    data = tmp_path / "data"
    data.mkdir()
    archive = data / "ml-latest-small.zip"
    archive.write_bytes(ml_small_zip.read_bytes())
    dest = tmp_path / "ml-small.duckdb"
    first = compile_dataset("ml-small", data_dir=data, allow_download=False, dest=dest)
    assert not first.skipped
    assert compile_dataset("ml-small", data_dir=data, allow_download=False, dest=dest).skipped
    later = archive.stat().st_mtime_ns + 10**9
    os.utime(archive, ns=(later, later))  # touched, same bytes: the MD5 decides, still up to date
    assert compile_dataset("ml-small", data_dir=data, allow_download=False, dest=dest).skipped
    archive.write_bytes(ml_small_zip.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    with pytest.raises(HarnessError, match="checksum mismatch"):
        compile_dataset("ml-small", data_dir=data, allow_download=False, dest=dest)
    with CompiledDataset.open(dest) as ds:  # the previous good build is untouched
        assert ds.fingerprint == first.fingerprint
