"""What a reader sees without hovering, and what a record page lets them download: the headline cutoff's table
first, the queries behind each column (small ones marked), the seeds behind each row and the spread over them,
and the record's run, qrels and per-query files copied into the site. Browser checks: test_leaderboard_browser.py;
the atomic swap: test_leaderboard_publish.py."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.leaderboard import build_site
from harness.leaderboard.record_views import data_files, format_bytes
from harness.leaderboard.synthetic import LINEUP, synthetic_record, write_records
from harness.records.record import ResultRecord
from harness.records.validate import read_record
from test_leaderboard import cell_value, parse_html, site_files

REPO = Path(__file__).resolve().parents[1]


def _panels(page, measure: str | None = None) -> list[tuple[str, int]]:
    return [(p.attrs["data-measure"], int(p.attrs["data-k"])) for p in page.find_all("section", class_="k-panel")
            if measure is None or p.attrs["data-measure"] == measure]


def test_the_headline_cutoff_comes_first_in_the_page_wherever_it_lies(tmp_path):
    """A headline K that is neither the smallest nor the largest (R@10 of 1, 5, 10, 30): its table comes first in
    each measure, Recall's measure first; the cutoff switch keeps its buttons ascending."""
    records = []
    for entry in (LINEUP[3], LINEUP[4]):
        record = synthetic_record(entry, "sim1", ks=[1, 5, 10, 30], measures=("R", "nDCG"))
        record["protocol"]["params"]["headline_k"] = record["dataset"]["headline_k"] = 10
        records.append(record)
    write_records(tmp_path / "results", records)
    build_site(tmp_path / "results", tmp_path / "site")
    for name in ("index.html", "dataset-sim1.html"):
        page = parse_html((tmp_path / "site" / name).read_text())
        assert _panels(page) == [(m, k) for m in ("R", "nDCG") for k in (10, 1, 5, 30)], name
        first = page.find("table", class_="board")
        assert first.find("caption").text().startswith("Recall@10 (headline cutoff) on sim1")
        assert "active" in page.find("section", class_="k-panel").classes()
        switch = page.find("div", class_="k-switch")
        assert [b.attrs["data-k"] for b in switch.find_all("button")] == ["1", "5", "10", "30"]


def _spread_records() -> list[dict]:
    """Pop_R over three seeds, Pop_S over one, and BM25 with one of three seeds failed; R@10/head over 3 queries."""
    three = synthetic_record(LINEUP[3], "sim2", seeds=(0, 1, 2))
    one = synthetic_record(LINEUP[4], "sim2", seeds=(0,))
    failed = synthetic_record(LINEUP[7], "sim2", seeds=(0, 1, 2))
    failed["units"][2] = {"seed": 2, "status": "failed", "error": {"type": "RuntimeError", "message": "NaN",
                                                                  "traceback": None}}
    for task in failed["metrics"].values():
        for value in task.values():
            del value["per_seed"]["2"]
            value["mean"] = statistics.fmean(value["per_seed"].values())
    for record in (three, one, failed):
        for task in record["metrics"].values():
            task["R@10/head"]["n"] = 3
    return [three, one, failed]


def test_queries_per_column_seeds_per_row_and_the_spread_over_seeds_are_shown(tmp_path):
    records = _spread_records()
    write_records(tmp_path / "results", records)
    build_site(tmp_path / "results", tmp_path / "site")
    page = parse_html((tmp_path / "site" / "dataset-sim2.html").read_text())
    table = page.find("table", id=[t.attrs["id"] for t in page.find_all("table", class_="board")][0])
    assert table.attrs["id"].endswith("-k10")
    # each column's number of queries under its name; fewer than 30 marked, and said why on hover
    heads = table.find("thead").find_all("tr")[1].find_all("th")
    assert [th.find("span", class_="n").text() for th in heads] == ["n = 500", "n = 3 (few)", "n = 450"] * 2
    few = [th for th in heads if th.find_all("span", class_="few")]
    assert len(few) == 2 and all("over 3 test queries: fewer than 30" in th.attrs["title"] for th in few)
    assert "few: under 30" in page.find("p", class_="legend").text()
    # each row's seeds: the finished ones, which its values are over
    rows = {tr.attrs["data-submission"]: tr for tr in table.find_all("tr") if "data-submission" in tr.attrs}
    seeds = {name: tr.find("span", class_="seeds").text() for name, tr in rows.items()}
    assert seeds == {"pop_rec": "3 seeds", "pop_search": "1 seed", "bm25": "2 seeds"}
    assert rows["bm25"].find("span", class_="seeds").attrs["title"] == "values are the mean over seeds 0, 1"
    assert "1/3 seeds failed" in rows["bm25"].find("th").text()
    # mean ± the sample standard deviation (ddof=1) of the per-seed means, where two or more seeds give one
    by_name = {r["submission"]["name"]: r for r in records}
    for name, tr in rows.items():
        record = by_name[name]
        tds = tr.find_all("td")
        for td, (task, seg) in zip(tds, [(t, s) for t in ("rec", "search") for s in ("", "/head", "/torso")]):
            if task not in record["submission"]["tasks"]:
                assert td.text().strip() == "n/a"
                continue
            value = record["metrics"][task][f"R@10{seg}"]
            assert cell_value(td.text()) == f"{value['mean']:.3f}"
            assert td.attrs["data-sort"] == repr(round(value["mean"], 3))  # sorting stays on the mean
            spread = td.find("span", class_="sd")  # every cell of a column with a spread has the (maybe empty) box
            per_seed = list(value["per_seed"].values())
            if len(per_seed) >= 2:
                assert spread.text() == f"± {statistics.stdev(per_seed):.3f}"
                assert f"sample sd {statistics.stdev(per_seed):.4f}" in td.attrs["title"]
            else:
                assert spread.text() == "" and "±" not in td.text()


def _run_sim1(results: Path) -> None:
    build_dataset("sim1")
    for name in ("pop_rec", "pop_search"):
        assert main(["run", str(REPO / "submissions" / name), "-d", "sim1", "--out", str(results), "--no-progress",
                     "--no-site"]) == 0


def _links(page_path: Path, dataset: str) -> dict[str, str]:
    """{link text: href} of the record's files (the "Files" list of its section on the submission page)."""
    page = parse_html(page_path.read_text())
    sections = [s for s in page.find_all("section", class_="card") if s.attrs["id"].startswith(f"{dataset}-")]
    assert len(sections) == 1
    return {a.text(): a.attrs["href"] for ul in sections[0].find_all("ul", class_="files") for a in ul.find_all("a")}


def test_record_pages_link_the_records_run_qrels_and_per_query_files(tmp_path):
    """Records made by the runner name per-query Parquet, qrels, runs and head items: each is copied into the site
    beside the record's JSON copy, byte for byte, and linked from the record's section. The gate's committed
    baseline records hold only record.json and per_query.parquet: their pages link what they have."""
    results = tmp_path / "results"
    _run_sim1(results)
    shutil.copytree(REPO / "bench" / "baselines" / "quick" / "sim2", results / "gate-sim2")
    report = build_site(results, tmp_path / "site")
    assert not report.skipped
    site = tmp_path / "site"
    for name in ("pop_rec", "pop_search"):
        folder = results / "sim1" / name
        record = read_record(folder / "record.json")
        files = record["files"]
        expected = {files["per_query"], *files["qrels"].values(), *(n for ns in files["runs"].values() for n in ns),
                    *files.get("heads", {}).values()}
        assert {"per_query.parquet", "rec.qrels", "rec.seed0.run", "search.qrels", "search.seed0.run"} <= expected
        page = site / "submissions" / f"{name}.html"
        links = _links(page, "sim1")
        assert set(links) == expected
        for file_name, href in links.items():
            copied = (page.parent / href).resolve()
            assert copied.is_relative_to(site.resolve()) and copied.name == file_name
            assert copied.read_bytes() == (folder / file_name).read_bytes()
            json_copy = copied.parent.with_suffix(".json")  # next to the record's JSON copy: records/GROUP/SUB.json
            assert json_copy.is_file() and f'href="../{json_copy.relative_to(site).as_posix()}"' in page.read_text()
    for folder in sorted((results / "gate-sim2").iterdir()):
        record = read_record(folder / "record.json")
        assert record["files"]["runs"] == {} and record["files"]["per_query"] == "per_query.parquet"
        page = site / "submissions" / f"{record['submission']['name']}.html"
        links = _links(page, "sim2")
        assert set(links) == {"per_query.parquet"}, page
        assert (page.parent / links["per_query.parquet"]).read_bytes() == (folder / "per_query.parquet").read_bytes()
    # the same records give the same bytes, the copied files included
    build_site(results, tmp_path / "elsewhere" / "site")
    assert site_files(tmp_path / "elsewhere" / "site") == site_files(site)


def test_a_record_without_data_files_says_so(tmp_path):
    write_records(tmp_path / "results", [synthetic_record(LINEUP[3], "sim1")])  # names no file
    build_site(tmp_path / "results", tmp_path / "site")
    page = tmp_path / "site" / "submissions" / "pop_rec.html"
    assert _links(page, "sim1") == {} and "none beside record.json" in page.read_text()


def test_odd_file_names_are_made_safe_and_unique_and_nothing_outside_the_folder_is_copied(tmp_path):
    """What data_files makes of names the schema allows but a file system or a browser may not like ('=', '+', names
    differing in case only), of a name that is not a file, and of a link leading out of the record's folder."""
    record = synthetic_record(LINEUP[4], "sim1")
    names = ["rec=0+x.run", "Rec.run", "rec.run", "search.run", "missing.run", "link.run"]
    record["files"] = {"per_query": None, "runs": {"rec": names}, "qrels": {}}
    folder = tmp_path / "results" / "pop_search"
    folder.mkdir(parents=True)
    for name in names[:4]:
        (folder / name).write_text(f"{name}\n")
    (tmp_path / "secret.run").write_text("not the record's")
    (folder / "link.run").symlink_to(tmp_path / "secret.run")
    files = data_files(ResultRecord.from_dict(record, source="record.json"), folder, "records/g/pop_search")
    assert [link["name"] for link in files.links] == names[:4]  # the missing file and the way out are left out
    targets = [link["href"] for link in files.links]
    assert [c.target for c in files.copies] == targets and [c.source.name for c in files.copies] == names[:4]
    assert all(t.startswith("records/g/pop_search/") and t.count("/") == 3 for t in targets)
    leaves = [t.rsplit("/", 1)[1] for t in targets]
    assert leaves[3] == "search.run"  # a safe name is kept as it is, unless it differs from another in case only
    assert len({leaf.lower() for leaf in leaves}) == 4  # unique even on a case-insensitive file system
    assert all(leaf.endswith(".run") and "=" not in leaf and "+" not in leaf for leaf in leaves), leaves


@pytest.mark.parametrize("size, text", [(0, "0 bytes"), (1, "1 byte"), (999, "999 bytes"), (1_000, "1.0 kB"),
                                        (48_400, "48.4 kB"), (2_500_000, "2.5 MB"), (3 * 10**9, "3.0 GB")])
def test_format_bytes(size, text):
    assert format_bytes(size) == text
