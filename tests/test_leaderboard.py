"""The static leaderboard, without a browser: what the built HTML says, bad records, determinism, escaping,
the atomic swap. The browser checks are in test_leaderboard_browser.py and reuse the helpers here."""

from __future__ import annotations

import copy
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.io import write_json_atomic
from harness.leaderboard import SITE_MARKER, build_site
from harness.leaderboard import site as site_module
from harness.leaderboard.collect import collect
from harness.leaderboard.synthetic import LINEUP, sha256_of, synthetic_record, synthetic_records, write_records
from harness.leaderboard.tables import format_percent
from harness.leaderboard.views import slugs

XSS = "<script>alert(1)</script>"


# --- a small DOM from the standard library's HTML parser (the page is ours: well-formed, no implied tags) ---


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: "Element | None") -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list["Element | str"] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs) -> list["Element"]:
        """Descendants by tag and attribute values; class_="x" matches one class among several."""
        out = []
        for el in self.iter():
            if tag is not None and el.tag != tag:
                continue
            if all((value in el.classes()) if key == "class_" else el.attrs.get(key.replace("_", "-")) == value
                   for key, value in attrs.items()):
                out.append(el)
        return out

    def find(self, tag: str | None = None, **attrs) -> "Element":
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag}> with {attrs}"
        return found[0]


class _TreeBuilder(HTMLParser):
    VOID = {"meta", "link", "br", "img", "input", "hr", "col", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        el = Element(tag, dict(attrs), self.current)
        self.current.children.append(el)
        if tag not in self.VOID:
            self.current = el

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse_html(text: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def board_rows(table: Element) -> list[tuple[str, list[str]]]:
    """(submission name, [cell texts]) for each row of a leaderboard table, in page order."""
    rows = []
    for body in table.find_all("tbody", class_="rows"):
        for tr in body.find_all("tr"):
            cells = [td.text().strip() for td in tr.find_all("td")]
            rows.append((tr.attrs["data-submission"], cells))
    return rows


def cell_value(text: str) -> str:
    """'0.119‡± 0.012(+16%)' -> '0.119'."""
    return text.split("(")[0].split("±")[0].replace("‡", "").strip()


def site_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def records_dir(tmp_path) -> Path:
    root = tmp_path / "results"
    write_records(root, synthetic_records(2))
    return root


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def headline_table(page: Element, dataset_group_prefix: str, k: int) -> Element:
    tables = [t for t in page.find_all("table", class_="board")
              if t.attrs["id"].startswith(dataset_group_prefix) and t.attrs["id"].endswith(f"-k{k}")]
    assert len(tables) == 1, [t.attrs["id"] for t in page.find_all("table", class_="board")]
    return tables[0]


# --- the tables -------------------------------------------------------------------------------------


def test_table5_shape_values_improvements_and_bold(records_dir, tmp_path):
    build_site(records_dir, tmp_path / "site")
    page = parse_html((tmp_path / "site" / "index.html").read_text())
    table = headline_table(page, "synthetic-0000-", 30)
    # header: Submission, then All/Head/Torso for recommendation, then for search
    header_rows = table.find("thead").find_all("tr")
    assert [th.text().strip() for th in header_rows[0].find_all("th")] == ["Submission", "Recommendation", "Search"]
    heads = header_rows[1].find_all("th")
    assert [th.children[0] for th in heads] == ["All", "Head", "Torso"] * 2
    # under each column's name, its number of test queries (none is small here: no caveat)
    assert [th.find("span", class_="n").text() for th in heads] == ["n = 500", "n = 100", "n = 450"] * 2
    assert not [th for th in heads if th.find_all("span", class_="few")]
    # blocks: generative first (references before the joint model), then baselines by name
    blocks = [b.text().strip() for b in table.find_all("tbody", class_="block")]
    assert blocks == ["Generative retrieval methods", "Baselines (for reference)"]
    rows = board_rows(table)
    assert [name for name, _ in rows] == [
        "rec_t5", "search_t5", "joint_t5", "bert4rec", "biencoder", "bm25", "pop_rec", "pop_search", "sasrec"]

    recs = {n: read(records_dir / "synthetic-0000" / n / "record.json") for n, _ in rows}
    columns = [(task, seg) for task in ("rec", "search") for seg in ("", "/head", "/torso")]
    for name, cells in rows:
        record = recs[name]
        for (task, seg), text in zip(columns, cells):
            if task not in record["submission"]["tasks"]:
                assert text == "n/a"
            else:
                assert cell_value(text) == f"{record['metrics'][task][f'R@30{seg}']['mean']:.3f}"
    # the joint model's improvement over each reference, recomputed from the two records
    joint = dict(rows)["joint_t5"]
    for (task, seg), text in zip(columns, joint):
        ref = recs[{"rec": "rec_t5", "search": "search_t5"}[task]]
        mean = recs["joint_t5"]["metrics"][task][f"R@30{seg}"]["mean"]
        ref_mean = ref["metrics"][task][f"R@30{seg}"]["mean"]
        assert text.endswith(f"({format_percent((mean - ref_mean) / ref_mean * 100)})")
    # bold: exactly the best shown value(s) of each column
    trs = [tr for body in table.find_all("tbody", class_="rows") for tr in body.find_all("tr")]
    for i in range(6):
        shown = [(tr.attrs["data-submission"], cell_value(tr.find_all("td")[i].text())) for tr in trs]
        numbers = [float(v) for _, v in shown if v not in ("n/a", "—")]
        bold = {tr.attrs["data-submission"] for tr in trs if tr.find_all("td")[i].find_all("strong")}
        assert bold == {n for n, v in shown if v not in ("n/a", "—") and float(v) == max(numbers)}


def test_significance_marks_follow_the_records_holm_decision(tmp_path):
    root = tmp_path / "results"
    ref = synthetic_record(LINEUP[0], "sim1")
    joint = synthetic_record(LINEUP[2], "sim1", reference_metrics={"rec": ref["metrics"]["rec"]})
    rows = joint["significance"]["rec"]
    # R@10 significant after Holm; R@10/head significant before correction only: no mark; torso not significant.
    # The p-values are Holm's of (0.01, 0.03, 0.5), as the record's verification recomputes them.
    rows[0].update(p=0.01, p_holm=0.03, significant=True)
    rows[1].update(p=0.03, p_holm=0.06, significant=False)
    rows[2].update(p=0.5, p_holm=0.5, significant=False)
    write_records(root, [ref, joint])
    build_site(root, tmp_path / "site")
    page = parse_html((tmp_path / "site" / "index.html").read_text())
    table = headline_table(page, "sim1-", 10)
    tr = table.find("tr", data_submission="joint_t5")
    tds = tr.find_all("td")
    assert [bool(td.find_all("sup", class_="sig")) for td in tds[:3]] == [True, False, False]
    assert "Holm p = 0.03, significant at α = 0.05" in tds[0].attrs["title"]
    assert "Holm p = 0.06, not significant" in tds[1].attrs["title"]
    # other cutoffs carry no mark: the records test the headline K only
    assert not headline_table(page, "sim1-", 5).find_all("sup", class_="sig")
    # the submission page lists every test with its Holm p-value
    sub = (tmp_path / "site" / "submissions" / "joint_t5.html").read_text()
    assert ">0.03<" in sub and ">0.06<" in sub


def test_every_cutoff_has_a_table_and_the_headline_is_shown_first(records_dir, tmp_path):
    build_site(records_dir, tmp_path / "site")
    page = parse_html((tmp_path / "site" / "index.html").read_text())
    for prefix, ks, headline in (("synthetic-0000-", [1, 5, 10, 30], 30), ("synthetic-0001-", [1, 5, 10], 10)):
        panels = [p for p in page.find_all("section", class_="k-panel") if p.attrs["data-group"].startswith(prefix)]
        # the headline cutoff's table first in the page (what a reader without scripts sees first), then the others
        assert [int(p.attrs["data-k"]) for p in panels] == [headline] + [k for k in ks if k != headline]
        assert [int(p.attrs["data-k"]) for p in panels if "active" in p.classes()] == [headline]
        switch = page.find("div", class_="k-switch", data_group=panels[0].attrs["data-group"])
        assert "hidden" in switch.attrs  # the script shows it; without scripts every table is listed
        assert [int(b.attrs["data-k"]) for b in switch.find_all("button")] == ks  # the switch stays ascending
        pressed = [b.text() for b in switch.find_all("button") if b.attrs["aria-pressed"] == "true"]
        assert pressed == [f"R@{headline}"]


def test_secondary_measures_have_tables_of_their_own_beside_older_records(tmp_path):
    """Records of schema 1.2 list Recall, nDCG and RR; a record from before lists nothing (Recall alone). The page
    keeps Recall's tables (and ids) first, adds a table per measure and cutoff behind a measure switch, shows "—"
    for what an older record did not measure, and computes improvements over the reference in every measure."""
    measures = ("R", "nDCG", "RR")
    ref = synthetic_record(LINEUP[0], "sim1", measures=measures)
    search_ref = synthetic_record(LINEUP[1], "sim1", measures=measures)
    joint = synthetic_record(LINEUP[2], "sim1", measures=measures,
                             reference_metrics={"rec": ref["metrics"]["rec"], "search": search_ref["metrics"]["search"]})
    older = synthetic_record(LINEUP[3], "sim1")  # Recall alone, schema 1.0
    write_records(tmp_path / "results", [ref, search_ref, joint, older])
    build_site(tmp_path / "results", tmp_path / "site")
    page = parse_html((tmp_path / "site" / "dataset-sim1.html").read_text())
    panels = page.find_all("section", class_="k-panel")
    assert [(p.attrs["data-measure"], p.attrs["data-k"]) for p in panels] == [
        (m, str(k)) for m in ("R", "nDCG", "RR") for k in (10, 1, 5)]  # Recall first; the headline K first in each
    assert [(p.attrs["data-measure"], p.attrs["data-k"]) for p in panels if "active" in p.classes()] == [("R", "10")]
    group = panels[0].attrs["data-group"]
    assert page.find("table", id=f"{group}-k10") is not None  # Recall's ids as before
    switch = page.find("div", class_="measure-switch", data_group=group)
    assert [b.text() for b in switch.find_all("button")] == ["Recall", "nDCG", "Reciprocal rank"]
    table = page.find("table", id=f"{group}-nDCG-k10")
    assert table.find("caption").text().startswith("nDCG@10 (headline cutoff) on sim1")
    cells = table.find("tr", data_submission="joint_t5").find_all("td")
    mine, theirs = joint["metrics"]["rec"]["nDCG@10"]["mean"], ref["metrics"]["rec"]["nDCG@10"]["mean"]
    assert cell_value(cells[0].text()) == f"{mine:.3f}"
    assert f"({format_percent((mine - theirs) / theirs * 100)})" in cells[0].text()
    assert not table.find_all("sup", class_="sig")  # only Recall is tested
    old_cells = table.find("tr", data_submission="pop_rec").find_all("td")
    assert [cell_value(td.text()) for td in old_cells] == ["—"] * 6
    assert "not measured" in old_cells[0].attrs["title"]
    assert "Secondary measures (nDCG, Reciprocal rank)" in page.text()


def test_reference_scoring_zero_gives_no_percentage(tmp_path):
    root = tmp_path / "results"
    ref = synthetic_record(LINEUP[0], "sim1")
    ref["metrics"]["rec"]["R@10/torso"].update(mean=0.0, per_seed={"0": 0.0, "1": 0.0})
    joint = synthetic_record(LINEUP[2], "sim1")
    write_records(root, [ref, joint])
    build_site(root, tmp_path / "site")
    index = parse_html((tmp_path / "site" / "index.html").read_text())
    cells = dict(board_rows(headline_table(index, "sim1-", 10)))["joint_t5"]
    assert cells[2].endswith("(–)") and cells[0].endswith("%)")


def test_dataset_page_shows_table3_stats_or_says_not_recorded(tmp_path):
    root = tmp_path / "results"
    with_stats = synthetic_record(LINEUP[3], "sim1")
    without = synthetic_record(LINEUP[3], "sim2")
    del without["dataset"]["stats"]
    write_records(root, [with_stats, without])
    build_site(root, tmp_path / "site")
    sim1 = parse_html((tmp_path / "site" / "dataset-sim1.html").read_text())
    stats = {s.find("div", class_="k").text(): s.find("div", class_="v").text() for s in sim1.find_all("div", class_="stat")}
    assert stats["R # users"] == "200" and stats["S avg rel/query"] == "2.00" and stats["KLD(R||S)"] == "0.12"
    assert len(stats) == 11
    assert "not recorded" in (tmp_path / "site" / "dataset-sim2.html").read_text()
    listing = parse_html((tmp_path / "site" / "datasets.html").read_text())
    rows = {tr.find("th").text(): [td.text() for td in tr.find_all("td")] for tr in listing.find("tbody").find_all("tr")}
    assert rows["sim1"][:4] == [with_stats["dataset"]["fingerprint"][7:19], "1", "1", "1"]
    assert rows["sim1"][5] == "200" and rows["sim2"][4:] == ["—"] * 11


# --- bad records, groups ----------------------------------------------------------------------------


def test_bad_records_are_reported_and_skipped_without_breaking_the_build(records_dir, tmp_path):
    good = read(records_dir / "synthetic-0000" / "pop_rec" / "record.json")

    def put(name: str, record_or_text) -> None:
        folder = records_dir / "bad" / name
        folder.mkdir(parents=True)
        text = record_or_text if isinstance(record_or_text, str) else json.dumps(record_or_text)
        (folder / "record.json").write_text(text)

    status = copy.deepcopy(good)
    status["units"][0]["status"] = "done"
    put("status", status)
    newer = copy.deepcopy(good)
    newer.update(schema_version="1.4", calibration={"ece": 0.1})
    put("newer", newer)
    major = copy.deepcopy(good)
    major["schema_version"] = "2.0"
    put("major", major)
    other_fp = read(records_dir / "synthetic-0000" / "joint_t5" / "record.json")
    other_fp["significance"]["rec"][0]["reference_fingerprint"] = sha256_of("another dataset build")
    put("fingerprint", other_fp)
    put("json", '{"schema_version": "1.0",')
    missing = copy.deepcopy(good)
    missing["files"]["per_query"] = "per_query.parquet"
    put("missing", missing)
    older = copy.deepcopy(good)  # the same submission, dataset, fingerprint and protocol, finished earlier
    older["timing"]["finished_at"] = "2024-04-01T00:00:00+00:00"
    put("duplicate", older)

    report = build_site(records_dir, tmp_path / "site")
    reasons = {s.path: s.reason for s in report.skipped}
    assert set(reasons) == {f"bad/{n}/record.json" for n in
                            ("status", "newer", "major", "fingerprint", "json", "missing", "duplicate")}
    assert "$.units[0].status: 'done' is not one of ['ok', 'failed']" in reasons["bad/status/record.json"]
    assert "unknown field 'calibration': the record uses schema 1.4; this harness knows 1.3: upgrade the harness" \
        in reasons["bad/newer/record.json"]
    assert "the record uses schema 2.0" in reasons["bad/major/record.json"]
    assert "reference_fingerprint: the reference was measured on" in reasons["bad/fingerprint/record.json"]
    assert "bad/json/record.json:1:26: not valid JSON" in reasons["bad/json/record.json"]
    assert "names 'per_query.parquet', which is not in" in reasons["bad/missing/record.json"]
    assert "has a later or equal record, which is shown instead: synthetic-0000/pop_rec/record.json" \
        in reasons["bad/duplicate/record.json"]
    assert all(str(tmp_path) not in r for r in reasons.values())  # relative paths: same site anywhere
    assert report.records == 18
    lines = report.lines()
    assert any(line.startswith("skipped bad/status/record.json: $.units[0].status") for line in lines)
    page = (tmp_path / "site" / "report.html").read_text()
    assert "bad/newer/record.json" in page and "7 skipped" in page
    assert (tmp_path / "site" / "submissions" / "joint_t5.html").is_file()


def test_fingerprints_and_protocol_versions_never_share_a_table(tmp_path):
    root = tmp_path / "results"
    old = synthetic_record(LINEUP[3], "sim1", finished_at="2024-01-01T00:00:00+00:00")
    new = synthetic_record(LINEUP[4], "sim1", fingerprint=sha256_of("rebuilt sim1"), finished_at="2024-06-01T00:00:00Z")
    v2 = synthetic_record(LINEUP[3], "sim1", protocol_version="2", finished_at="2024-03-01T00:00:00+00:00")
    write_records(root / "a", [old])
    write_records(root / "b", [new])
    write_records(root / "c", [v2])
    collection = collect(root)
    assert [(g.fingerprint, g.protocol_version, [r.name for r in g.records]) for g in collection.groups] == [
        (new["dataset"]["fingerprint"], "1", ["pop_search"]),  # the most recently measured first
        (v2["dataset"]["fingerprint"], "2", ["pop_rec"]),
        (old["dataset"]["fingerprint"], "1", ["pop_rec"]),
    ]
    build_site(root, tmp_path / "site")
    index = parse_html((tmp_path / "site" / "index.html").read_text())
    boards = index.find_all("table", class_="board")
    assert {r for t in boards for r, _ in board_rows(t)} == {"pop_search"}  # only the current group
    assert "2 more tables of sim1 on another dataset fingerprint or protocol version" in index.text()
    dataset = parse_html((tmp_path / "site" / "dataset-sim1.html").read_text())
    for table in dataset.find_all("table", class_="board"):
        names = {r for r, _ in board_rows(table)}
        assert len(names) == 1  # every record is alone in its group here
        caption = table.find("caption").text()
        record = {"pop_search": new, "pop_rec": v2 if "protocol 2" in caption else old}[names.pop()]
        assert f"protocol {record['protocol']['version']}," in caption
        assert record["dataset"]["fingerprint"][7:19] in caption


def test_several_records_folders_are_read_together_and_a_users_rerun_replaces_the_published_row(tmp_path):
    official, mine = tmp_path / "leaderboard" / "official", tmp_path / "leaderboard" / "results"
    published = synthetic_record(LINEUP[0], "sim1", finished_at="2024-01-01T00:00:00+00:00")
    other = synthetic_record(LINEUP[1], "sim1", finished_at="2024-01-01T00:00:00+00:00")
    rerun = synthetic_record(LINEUP[0], "sim1", finished_at="2024-06-01T00:00:00+00:00")
    write_records(official, [published, other])
    write_records(mine, [rerun])
    collection = collect([official, mine])
    assert collection.root == tmp_path / "leaderboard"
    a, b = published["submission"]["name"], other["submission"]["name"]
    assert sorted(r.path for r in collection.records) == [f"official/sim1/{b}/record.json", f"results/sim1/{a}/record.json"]
    assert [s.path for s in collection.skipped] == [f"official/sim1/{a}/record.json"]  # the user's later rerun wins
    report = build_site([official, mine], tmp_path / "site")
    assert report.records == 2
    assert (tmp_path / "site" / "index.html").is_file()
    with pytest.raises(HarnessError, match="one holds the other"):
        collect([tmp_path / "leaderboard", mine])
    with pytest.raises(HarnessError, match="no such records folder"):
        collect([official, tmp_path / "missing"])


def test_reference_without_a_record_on_the_same_fingerprint_gives_no_improvement(tmp_path):
    root = tmp_path / "results"
    ref = synthetic_record(LINEUP[0], "sim1", fingerprint=sha256_of("other build"))
    joint = synthetic_record(LINEUP[2], "sim1")  # no significance rows: its references were not run here
    write_records(root / "x", [ref])
    write_records(root / "y", [joint])
    report = build_site(root, tmp_path / "site")
    index = parse_html((tmp_path / "site" / "index.html").read_text())
    cells = dict(board_rows(headline_table(index, "sim1-", 10)))["joint_t5"]
    assert all("%" not in c for c in cells)
    assert any("names 'rec_t5' as its recommendation reference, which has no record" in n for n in report.notes)


# --- escaping, failed units, diagnostics ------------------------------------------------------------


def test_every_string_from_a_record_is_escaped(tmp_path):
    root = tmp_path / "results"
    record = synthetic_record(LINEUP[2], "sim1")
    record["submission"]["display_name"] = XSS
    record["submission"]["params"] = {XSS: XSS}
    record["submission"]["config"]["note"] = XSS
    record["units"][1] = {"seed": 1, "status": "failed", "error": {"type": XSS, "message": XSS, "traceback": XSS}}
    record["diagnostics"] = {"notes": [XSS, {"a": XSS, "b": 1}, {"a": "<b>", "b": 2}]}
    record["environment"]["gpu"] = XSS
    write_records(root, [record])
    build_site(root, tmp_path / "site")
    for path in sorted((tmp_path / "site").rglob("*.html")):
        html = path.read_text()
        assert "<script>alert" not in html, path
        assert html.count("<script") == 1, path  # the page's own script only
    sub = (tmp_path / "site" / "submissions" / "joint_t5.html").read_text()
    assert sub.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8
    index = parse_html((tmp_path / "site" / "index.html").read_text())
    assert index.find("tr", data_submission="joint_t5").find("a").text() == XSS  # shown as text


def test_failed_units_show_their_errors_and_flag_the_row(tmp_path):
    root = tmp_path / "results"
    record = synthetic_record(LINEUP[3], "sim1", seeds=(0, 1, 2))
    record["units"][2] = {"seed": 2, "status": "failed", "error": {
        "type": "RuntimeError", "message": "loss became NaN at step 1200",
        "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: loss became NaN at step 1200\n"}}
    for task in record["metrics"].values():
        for value in task.values():
            del value["per_seed"]["2"]
            value["mean"] = (value["per_seed"]["0"] + value["per_seed"]["1"]) / 2  # over the seeds that finished
    write_records(root, [record])
    build_site(root, tmp_path / "site")
    index = parse_html((tmp_path / "site" / "index.html").read_text())
    assert index.find("tr", data_submission="pop_rec").find("span", class_="badge").text() == "1/3 seeds failed"
    sub = parse_html((tmp_path / "site" / "submissions" / "pop_rec.html").read_text())
    notice = sub.find("div", class_="notice")
    assert "Seed 2 failed:" in notice.text() and "RuntimeError: loss became NaN at step 1200" in notice.text()
    assert "Traceback (most recent call last)" in notice.find("pre").text()
    unit_rows = [tr for tr in sub.find_all("tr") if tr.find_all("td") and tr.find_all("td")[0].text() in ("0", "1", "2")]
    assert [tr.find_all("td")[1].text() for tr in unit_rows] == ["ok", "ok", "failed"]
    assert unit_rows[0].find_all("td")[2].text() == "12.5 s"


def test_diagnostic_figures_are_copied_and_paths_outside_the_record_refused(tmp_path):
    root = tmp_path / "results"
    record = synthetic_record(LINEUP[2], "sim1")
    record["diagnostics"] = {"figures": {"projection": "figures/projection.svg", "escape": "../../secret.svg",
                                         "missing": "nope.png"},
                             "rec": {"h1": {"all": {"mean": 0.25, "p": 0.01}}}}
    folder = write_records(root, [record])[0]
    (folder / "figures").mkdir()
    (folder / "figures" / "projection.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (root / "secret.svg").write_text("<svg/>")
    build_site(root, tmp_path / "site")
    figures = sorted(p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site" / "figures").rglob("*.*"))
    assert len(figures) == 1 and figures[0].endswith("joint_t5/figures/projection.svg")
    sub = parse_html((tmp_path / "site" / "submissions" / "joint_t5.html").read_text())
    assert [img.attrs["src"] for img in sub.find_all("img")] == [f"../{figures[0]}"]
    text = sub.text()
    assert "../../secret.svg" in text and "nope.png" in text  # shown as plain strings, not as figures
    assert "0.25" in text


def test_valid_but_unusual_records_still_build(tmp_path):
    """What the schema allows must render: a measure this harness does not compute, timestamps in Z with a
    one-digit fraction, free-form values of every JSON type, a kind of its own."""
    root = tmp_path / "results"
    record = synthetic_record(LINEUP[3], "sim1:q_match=0.5")
    record["metrics"]["rec"]["NDCG@10"] = {"mean": 0.5, "n": 10, "per_seed": {"0": 0.5, "1": 0.5}}
    record["timing"]["finished_at"] = "2024-05-01T12:00:00.5Z"
    record["submission"]["kind"] = "hybrid"
    record["units"][0]["adapter_info"] = {"nested": {"list": [1, "two", None, True, 2.5e-9]}, "empty": {}}
    record["dataset"]["stats"] = {"rec_users": True, "rec_items": "many"}
    write_records(root, [record])
    build_site(root, tmp_path / "site")
    sub = parse_html((tmp_path / "site" / "submissions" / "pop_rec.html").read_text())
    metrics = [tr.find_all("td")[1].text() for tr in sub.find_all("tr") if len(tr.find_all("td")) > 4
               and tr.find_all("td")[0].text() == "Recommendation"]
    assert metrics[0] == "R@1" and metrics[-1] == "NDCG@10"
    assert "1, two, —, yes, 2.5e-09" in sub.text()
    index = parse_html((tmp_path / "site" / "index.html").read_text())
    assert "Other submissions (hybrid)" in index.text()
    page = next((tmp_path / "site").glob("dataset-sim1*.html")).read_text()
    assert page.count("not recorded") == 11  # bools and strings are not statistics


# --- determinism and writing ------------------------------------------------------------------------


def test_same_records_give_the_same_bytes_wherever_they_lie(records_dir, tmp_path):
    other = tmp_path / "elsewhere" / "copy"
    shutil.copytree(records_dir, other)
    (records_dir / "bad").mkdir()
    (records_dir / "bad" / "record.json").write_text("{}")
    (other / "bad").mkdir()
    (other / "bad" / "record.json").write_text("{}")
    build_site(records_dir, tmp_path / "a")
    build_site(other, tmp_path / "b" / "site")
    a, b = site_files(tmp_path / "a"), site_files(tmp_path / "b" / "site")
    assert a == b
    assert SITE_MARKER in a and "index.html" in a and "records/synthetic-0000-" in "".join(a)
    build_site(records_dir, tmp_path / "a")  # a rebuild over an existing site: same bytes again
    assert site_files(tmp_path / "a") == a


def test_refuses_to_replace_a_folder_it_did_not_build(records_dir, tmp_path):
    precious = tmp_path / "work"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(HarnessError, match="is not a site built by"):
        build_site(records_dir, precious)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_a_failed_build_leaves_the_previous_site_untouched(records_dir, tmp_path, monkeypatch):
    out = tmp_path / "site"
    build_site(records_dir, out)
    before = site_files(out)
    write_records(records_dir, [synthetic_record(LINEUP[5], "late-dataset")])

    def explode(staging, pages, site):
        (staging / "index.html").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(site_module, "_write_files", explode)
    with pytest.raises(OSError, match="disk full"):
        build_site(records_dir, out)
    assert site_files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "site"]  # no staging folder left


# --- CLI and small helpers -------------------------------------------------------------------------


def test_cli_builds_reports_and_strict_fails_on_skipped(records_dir, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["leaderboard", "build", "--records", str(records_dir), "--out", str(out)]) == 0
    assert "built 15 pages from 18 records (0 skipped) in 2 tables" in capsys.readouterr().out
    (records_dir / "bad").mkdir()
    (records_dir / "bad" / "record.json").write_text("[]")
    assert main(["leaderboard", "build", "--records", str(records_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped bad/record.json: $: a result record must be a JSON object, got list" in printed
    assert main(["leaderboard", "build", "--records", str(records_dir), "--out", str(out), "--strict"]) == 1
    assert main(["leaderboard", "build", "--records", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no such records folder" in capsys.readouterr().err


def test_empty_records_folder_builds_a_page_saying_so(tmp_path):
    (tmp_path / "results").mkdir()
    report = build_site(tmp_path / "results", tmp_path / "site")
    assert report.records == 0
    assert "No usable result records yet" in (tmp_path / "site" / "index.html").read_text()


def test_runner_work_folders_are_not_searched(records_dir, tmp_path):
    stray = records_dir / "synthetic-0000" / "pop_rec" / "units" / "seed0"
    stray.mkdir(parents=True)
    (stray / "record.json").write_text("not a record")
    assert not build_site(records_dir, tmp_path / "site").skipped


def test_slugs_are_safe_unique_and_stable():
    names = ["sim2:q_match=0.5", "pop_rec", "Pop_Rec", "a/../b", "ml-small"]
    out = slugs(names)
    assert out == slugs(reversed(names))
    assert out["pop_rec"] != out["Pop_Rec"] and out["pop_rec"].lower() != out["Pop_Rec"].lower()
    assert out["ml-small"] == "ml-small"
    assert all("/" not in s and ":" not in s and not s.startswith(".") for s in out.values())
    assert len({s.lower() for s in out.values()}) == len(names)


@pytest.mark.parametrize("change, text", [(16.4, "+16%"), (-18.0, "−18%"), (0.0, "±0%"), (-0.4, "±0%"), (1234.0, "+1,234%")])
def test_format_percent(change, text):
    assert format_percent(change) == text


def test_records_with_diverging_protocol_parameters_are_flagged(tmp_path):
    root = tmp_path / "results"
    a = synthetic_record(LINEUP[3], "sim1")
    b = synthetic_record(LINEUP[4], "sim1")
    b["protocol"]["params"]["alpha"] = 0.01
    for row in b["significance"].values():
        for r in row:
            r["alpha"] = 0.01
    write_records(root, [a, b])
    report = build_site(root, tmp_path / "site")
    assert any("other protocol parameters" in n and "Pop_S" in n for n in report.notes)


def test_site_is_readable_by_others(records_dir, tmp_path):
    build_site(records_dir, tmp_path / "site")
    assert os.stat(tmp_path / "site").st_mode & 0o055 == 0o055


def _paired(mean, ref, p, significant):
    return {"metric": "m", "n": 10, "mean": mean, "reference_mean": ref, "diff": mean - ref, "ci_low": 0.0,
            "ci_high": 0.1, "t": 2.0, "p": p, "alpha": 0.05, "p_holm": p, "significant": significant}


DIAGNOSTICS_REC = {
    "version": 1, "task": "rec", "depth": 10, "n_requests": 250, "n_changed": 200, "reference": "rec_t5", "seed": 0,
    "h1": {"popularity_from": "search",
           "all": {"n": 250, "reference_mean": 32.351, "joint_mean": 33.4, "delta": 1.05, "delta_pct": 3.243,
                   "test": _paired(33.4, 32.351, 0.002, True)},
           "changed_only": {"n": 200, "reference_mean": 30.0, "joint_mean": 29.2, "delta": -0.8, "delta_pct": -2.72,
                            "test": _paired(29.2, 30.0, 0.4, False)}},
    "h2": {"metric": "history_target_query_matches", "n_changed": 200,
           "groups": {"joint_better": {"n": 91, "mean": 57.09}, "reference_better": {"n": 10, "mean": 20.0},
                      "tie": {"n": 99, "mean": 30.0}},
           "delta_pct": 185.46, "test": {"test": "welch-t", "p": 1e-5, "significant": True}},
    "redundancy": {"redundant_pairs": 75, "non_redundant_pairs": 3,
                   "groups": {"redundant": {"n_requests": 250, "n": 250, "joint_mean": 0.576, "reference_mean": 0.252,
                                            "improvement_pct": 128.6, "test": _paired(0.576, 0.252, 5e-18, True)},
                              "non_redundant": {"n_requests": 4, "n": 4, "joint_mean": 0.5, "reference_mean": 0.25,
                                                "improvement_pct": 100.0, "test": _paired(0.5, 0.25, 0.3, False)}}},
}


def test_diagnostics_render_as_the_papers_tables_on_the_dataset_and_submission_pages(tmp_path):
    root = tmp_path / "results"
    records = [synthetic_record(entry, "sim2") for entry in LINEUP[:3]]
    records[2]["diagnostics"] = {"rec": DIAGNOSTICS_REC}
    records.append(synthetic_record(LINEUP[2], "sim1"))  # no diagnostics there
    write_records(root, records)
    build_site(root, tmp_path / "site")
    for page_path in ("dataset-sim2.html", "submissions/joint_t5.html"):
        page = parse_html((tmp_path / "site" / page_path).read_text())
        diag = [t for t in page.find_all("table") if "diagnostics" in (t.attrs.get("class") or "")]
        assert len(diag) == 3, page_path
        rows = [[c.text() for c in tr.find_all("th") + tr.find_all("td")] for tr in diag[0].find("tbody").find_all("tr")]
        assert rows == [
            ["Recommendation", "search training data", "250", "32.35", "33.40", "+3.2%‡", "0.002"],
            ["Recommendation (changed lists only)", "search training data", "200", "30.00", "29.20", "−2.7%", "0.4"],
        ]
        h2 = [c.text() for c in diag[1].find("tbody").find("tr").find_all("td")]
        assert h2 == ["# matches of history → target queries", "200", "91, 57.09", "10, 20.00", "+185.5%‡", "1e-05"]
        t8 = [[c.text() for c in tr.find_all("td")] for tr in diag[2].find("tbody").find_all("tr")]
        assert t8[0] == ["with a redundant pair", "250", "75", "0.252", "0.576", "+128.6%‡", "5e-18"]
        assert t8[1] == ["with a non-redundant pair", "4", "3", "0.250", "0.500", "+100.0%", "0.3"]
        assert t8[3] == ["with neither", "—", "", "—", "—", "—", "—"]  # absent group: shown as undefined
    # A dataset whose records carry no diagnostics says why instead of showing empty tables.
    assert "No record in this table carries diagnostics" in (tmp_path / "site" / "dataset-sim1.html").read_text()
    assert "No record in this table carries diagnostics" not in (tmp_path / "site" / "dataset-sim2.html").read_text()


@pytest.mark.parametrize("diagnostics", [
    {"rec": {"h1": "not a mapping", "h2": [1, 2], "redundancy": None}},
    {"rec": {"h1": {"all": {"n": "many", "delta_pct": "12", "test": {"significant": "yes", "p": "low"}}}}},
    {"search": {"reference": XSS, "h2": {"metric": XSS}}},
])
def test_malformed_diagnostics_show_dashes_and_never_break_the_build(tmp_path, diagnostics):
    root = tmp_path / "results"
    record = synthetic_record(LINEUP[2], "sim1")
    record["diagnostics"] = diagnostics
    write_records(root, [record])
    report = build_site(root, tmp_path / "site")
    assert report.records == 1 and not report.skipped
    page = (tmp_path / "site" / "dataset-sim1.html").read_text()
    assert "H1: popularity of the predicted items (Table 6)" in page
    assert "<script>alert" not in page
    shown = page.split("Why? The paper")[1].split('<p class="legend">')[0]
    assert "‡" not in shown and "nan" not in shown.lower()
