"""MovieLens sources (GroupLens): ml-latest-small and ml-25m.

Recommendation: every rating is an interaction; a user's sequence is ordered by timestamp, ties broken by
movieId. Search: a query is a normalised genre, user tag (tags.csv) or, for ml-25m, genome tag whose
relevance to the movie is at least `genome_min` (default 0.8; see docs/datasets.md); identical normalised
texts are one query whose relevant movies are the union. Item title = movie title; item text = title and
genres ("Toy Story (1995) | Adventure, Animation, Children, Comedy, Fantasy"), what BM25 indexes.

The archive is found in the data directory and checked against its pinned MD5 (downloads.json), or given
explicitly with --path FILE.zip, which skips the pin (for fixtures and re-packed copies): the manifest then
records the file's own MD5 and `archive_verified: false`, and since the MD5 is part of the fingerprint such
a build can never pass for the official one.
"""

from __future__ import annotations

import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from harness.data.fetch import (
    check_csv_header,
    csv_error,
    downloads,
    extract_members,
    file_record,
    locate,
    md5_file,
)
from harness.data.params import Param, parse_params
from harness.data.sources.base import SourceContext, SourceResult
from harness.errors import HarnessError

NO_GENRE = "(no genres listed)"
DEFAULT_GENOME_MIN = 0.8
GENOME_MIN = Param("genome_min", float, DEFAULT_GENOME_MIN, 0.0, 1.0,
                   help="ml-25m: a genome tag is a query for the movies it applies to at least this strongly")

# member -> (header, DuckDB column types)
CSV_LAYOUT: dict[str, tuple[list[str], dict[str, str]]] = {
    "movies.csv": (["movieId", "title", "genres"], {"movieId": "BIGINT", "title": "VARCHAR", "genres": "VARCHAR"}),
    "ratings.csv": (
        ["userId", "movieId", "rating", "timestamp"],
        {"userId": "BIGINT", "movieId": "BIGINT", "rating": "DOUBLE", "timestamp": "BIGINT"},
    ),
    "tags.csv": (
        ["userId", "movieId", "tag", "timestamp"],
        {"userId": "BIGINT", "movieId": "BIGINT", "tag": "VARCHAR", "timestamp": "BIGINT"},
    ),
    "genome-scores.csv": (
        ["movieId", "tagId", "relevance"],
        {"movieId": "BIGINT", "tagId": "BIGINT", "relevance": "DOUBLE"},
    ),
    "genome-tags.csv": (["tagId", "tag"], {"tagId": "BIGINT", "tag": "VARCHAR"}),
}


# --------------------------------------------------------------------------------------------------
# Query text normalisation


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


_PAIRS = {"(": ")", "[": "]", "{": "}"}
_QUOTES = {'"', "'"}


def _keeps_head(text: str) -> bool:
    """A leading bracket or quote stays when its partner is further on ('(500) days', '"a" b')."""
    head = text[0]
    if head in _PAIRS:
        return _PAIRS[head] in text[1:]
    return head in _QUOTES and text.count(head) % 2 == 0


def _keeps_tail(text: str) -> bool:
    tail = text[-1]
    openers = [o for o, c in _PAIRS.items() if c == tail]
    if openers:
        return openers[0] in text[:-1]
    return tail in _QUOTES and text.count(tail) % 2 == 0


def normalise_query(text: str) -> str:
    """NFKC, lowercase, whitespace runs collapsed to one space, then Unicode punctuation (category P*)
    stripped from both ends, except a bracket or quote whose partner is inside the text:
    '"Funny"' -> 'funny', 'Oscar (Best Picture)' -> 'oscar (best picture)', 'quoted "tag"' stays."""
    text = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    while text:
        head, tail = text[0], text[-1]
        if len(text) > 1 and head == tail and _is_punct(head):
            text = text[1:-1].strip()  # wrapped: '"funny"', '...'
        elif _is_punct(head) and not _keeps_head(text):
            text = text[1:].strip()
        elif _is_punct(tail) and not _keeps_tail(text):
            text = text[:-1].strip()
        else:
            break
    return text


# --------------------------------------------------------------------------------------------------
# The source


@dataclass(frozen=True)
class MovieLensSource:
    name: str
    description: str
    archive: str  # key of downloads.json
    folder: str  # folder inside the zip
    genome: bool  # ml-25m: genome tags as queries
    headline_k: int = 30

    def load(self, con: duckdb.DuckDBPyConnection, ctx: SourceContext) -> SourceResult:
        params = self._params(ctx.params)
        archive, md5, verified = self._archive(ctx)
        members = ["movies.csv", "ratings.csv", "tags.csv"]
        if self.genome:
            members += ["genome-scores.csv", "genome-tags.csv"]
        with tempfile.TemporaryDirectory(prefix=f"harness-{self.name}-", dir=ctx.temp_dir) as tmp:
            paths = extract_members(archive, [f"{self.folder}/{m}" for m in members], Path(tmp))
            rows = {}
            for member in members:
                full = f"{self.folder}/{member}"
                rows[full] = self._read_csv(con, paths[full], f"{archive.name}:{full}", member, archive)
            if verified:
                self._check_rows(archive, rows)
        self._create_raw_tables(con, params)
        notes: dict[str, Any] = {"archive_verified": verified, "rows_read": rows, **self._query_notes(con)}
        return SourceResult(files=[file_record(archive, md5)], params=params, notes=notes)

    # -- inputs ---------------------------------------------------------------------------------

    @property
    def params(self) -> tuple[Param, ...]:
        """The declared parameters (harness.data.params): ml-25m's genome threshold; ml-small takes none."""
        return (GENOME_MIN,) if self.genome else ()

    def _params(self, raw: dict[str, str]) -> dict[str, Any]:
        return parse_params(self.name, raw, self.params)

    def _archive(self, ctx: SourceContext) -> tuple[Path, str, bool]:
        """(zip, md5, verified against the pin)."""
        if ctx.path is not None:
            path = Path(ctx.path)
            if path.is_dir():
                path = path / self.archive
            if not path.is_file():
                raise HarnessError(f"dataset {self.name}: archive {path} does not exist")
            return path, md5_file(path), False
        path, md5 = locate(downloads()[self.archive], ctx.data_dir, allow_download=ctx.allow_download)
        return path, md5, True

    def _read_csv(self, con: duckdb.DuckDBPyConnection, path: Path, label: str, member: str,
                  archive: Path) -> int:
        """Load one CSV into temp table ml_<name>; returns its row count."""
        header, types = CSV_LAYOUT[member]
        check_csv_header(path, header, label)
        table = "ml_" + member.removesuffix(".csv").replace("-", "_")
        columns = "{" + ", ".join(f"'{c}': '{t}'" for c, t in types.items()) + "}"
        try:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_csv(?, header = true,
                    auto_detect = false, delim = ',', quote = '"', escape = '"', strict_mode = true,
                    columns = {columns})""",
                [str(path)],
            )
        except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
            raise csv_error(exc, label, path, archive) from exc
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    def _check_rows(self, archive: Path, rows: dict[str, int]) -> None:
        expected = downloads()[self.archive].rows or {}
        for member, n in rows.items():
            if member in expected and expected[member] != n:
                raise HarnessError(
                    f"{archive.name}:{member}: read {n} rows, the pinned archive has {expected[member]}"
                )

    # -- raw tables -----------------------------------------------------------------------------

    def _create_raw_tables(self, con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE raw_items AS
                SELECT movieId::VARCHAR AS item_key, title,
                       CASE WHEN genres IS NULL OR genres = '{NO_GENRE}' THEN title
                            ELSE title || ' | ' || replace(genres, '|', ', ') END AS text,
                       NULL::INTEGER AS cluster
                FROM ml_movies"""
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE raw_interactions AS
               SELECT userId::VARCHAR AS user_key, movieId::VARCHAR AS item_key, timestamp AS ts, movieId AS seq
               FROM ml_ratings"""
        )
        self._create_query_tables(con, params)
        for table in ("ml_ratings", "ml_genome_scores"):
            con.execute(f"DROP TABLE IF EXISTS {table}")

    def _create_query_tables(self, con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
        """(movie, raw text, origin) rows -> normalised queries and their relevant movies."""
        parts = [
            f"""SELECT movieId, unnest(string_split(genres, '|')) AS raw_text, 'genre' AS origin FROM ml_movies
                WHERE genres IS NOT NULL AND genres <> '{NO_GENRE}'""",
            "SELECT movieId, tag AS raw_text, 'tag' AS origin FROM ml_tags WHERE tag IS NOT NULL",
        ]
        if self.genome:
            parts.append(
                f"""SELECT s.movieId, t.tag AS raw_text, 'genome' AS origin
                    FROM ml_genome_scores s JOIN ml_genome_tags t ON t.tagId = s.tagId
                    WHERE s.relevance >= {float(params['genome_min'])!r}"""
            )
        con.execute("CREATE OR REPLACE TEMP TABLE ml_query_rows AS " + " UNION ALL ".join(parts))
        # Normalisation (NFKC, Unicode punctuation) has no DuckDB equivalent: applied in Python once per
        # distinct raw text (tens of thousands at most), never per row.
        distinct = con.execute("SELECT DISTINCT raw_text FROM ml_query_rows").fetchnumpy()["raw_text"]
        mapping = pa.table({"raw_text": pa.array(list(distinct), pa.string()),
                            "norm": pa.array([normalise_query(t) for t in distinct], pa.string())})
        con.register("ml_norm_view", mapping)
        con.execute("CREATE OR REPLACE TEMP TABLE ml_norm AS SELECT * FROM ml_norm_view")
        con.unregister("ml_norm_view")
        con.execute(
            """CREATE OR REPLACE TEMP TABLE ml_query_items AS
               SELECT DISTINCT n.norm AS query_key, r.movieId::VARCHAR AS item_key, r.origin
               FROM ml_query_rows r JOIN ml_norm n ON n.raw_text = r.raw_text WHERE n.norm <> ''"""
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE raw_qrels AS SELECT DISTINCT query_key, item_key FROM ml_query_items"
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE raw_queries AS
               SELECT DISTINCT query_key, query_key AS text, NULL::VARCHAR AS split FROM ml_query_items"""
        )

    def _query_notes(self, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        """Distinct normalised queries per origin (before the compiler's filtering)."""
        rows = con.execute(
            "SELECT origin, count(DISTINCT query_key), count(*) FROM ml_query_items GROUP BY origin ORDER BY origin"
        ).fetchall()
        return {
            "raw_queries_by_origin": {o: int(n) for o, n, _ in rows},
            "raw_qrels_by_origin": {o: int(p) for o, _, p in rows},
        }


ML_SMALL = MovieLensSource(
    name="ml-small",
    description="MovieLens ml-latest-small: ratings by time; genres and user tags as queries",
    archive="ml-latest-small.zip",
    folder="ml-latest-small",
    genome=False,
)
ML_25M = MovieLensSource(
    name="ml-25m",
    description="MovieLens 25M: ratings by time; genres, user tags and genome tags (relevance >= genome_min)",
    archive="ml-25m.zip",
    folder="ml-25m",
    genome=True,
)
