"""Experiment pages on the static leaderboard: experiment.json found beside records, validated, and shown
with its table, figures, notes and links to the records behind its rows. Without a browser; the browser
check is in test_leaderboard_browser.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.leaderboard import SITE_MARKER, build_site
from harness.leaderboard.collect import collect, find_record_folders
from harness.leaderboard.experiments import format_number, read_experiment
from harness.leaderboard.synthetic import LINEUP, synthetic_record, write_records
from test_leaderboard import XSS, parse_html, site_files

# A small SVG as matplotlib writes them (an <svg> with a size); a script inside must never run on the site.
SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200" viewBox="0 0 320 200">'
       '<script>alert(1)</script><rect width="320" height="200" fill="#1f5fa8"/></svg>\n')


def summary(**overrides) -> dict:
    """A valid experiment.json (version 1), shaped like the lead's SIM2 example."""
    data = {
        "kind": "jsr-harness experiment", "version": 1, "name": "sim2",
        "title": "SIM2 (H2, search → recommendation): % of query match",
        "paper": "Table 4, §6.2",
        "description": "Recall of the joint model as the share of history-to-target query matches grows.",
        "command": "python -m harness experiment run sim2 --seeds 0 1",
        "columns": [{"key": "sample", "label": "Sample"}, {"key": "level", "label": "% of q. match"},
                    {"key": "model", "label": "Model"}, {"key": "n", "label": "Queries"},
                    {"key": "R@10", "label": "R@10"}, {"key": "p", "label": "p (vs Gen_R)"}],
        "rows": [
            {"sample": "100%", "level": "0%", "model": "Gen_R", "n": 1200, "R@10": 0.8, "p": None,
             "record": "results/sim2/rec_t5/record.json"},
            {"sample": "100%", "level": "0%", "model": "Gen_R+S", "n": 1200, "R@10": 0.84216, "p": 0.00002,
             "significant": True, "record": "results/sim2/joint_t5/record.json"},
            {"sample": "65%", "level": "50%", "model": "Gen_R+S", "n": 780, "R@10": None, "p": 0.3,
             "significant": False, "record": "results/sim2-65/joint_t5/record.json"},
        ],
        "figures": [{"file": "figures/sim2.svg", "alt": "R@10 of Gen_R+S against % of query match"}],
        "notes": ["seeds 0 and 1 averaged", "the 65% sample at 50% did not finish"],
        "harness_version": "0.1.0",
    }
    data.update(overrides)
    return data


def write_experiment(folder: Path, data: dict | None = None, *, records: bool = True, svg: str = SVG) -> dict:
    """An experiment folder as `harness experiment run` leaves it: records under results/, the figure,
    experiment.json. The 65% row's record is never written (the run did not finish)."""
    data = summary() if data is None else data
    if records:
        write_records(folder / "results", [synthetic_record(LINEUP[0], "sim2"), synthetic_record(LINEUP[2], "sim2")])
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    (folder / "figures" / "sim2.svg").write_text(svg)
    (folder / "experiment.json").write_text(json.dumps(data, ensure_ascii=False))
    return data


def page_of(site: Path, rel: str):
    return parse_html((site / rel).read_text())


def table_cells(page) -> list[list[str]]:
    table = page.find("table", id="experiment-table")
    return [[td.text().strip() for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]


@pytest.fixture
def built(tmp_path):
    root = tmp_path / "results"
    write_experiment(root / "sim2")
    report = build_site(root, tmp_path / "site")
    return root, tmp_path / "site", report


# --- the page -------------------------------------------------------------------------------------


def test_experiment_page_shows_what_the_summary_says(built):
    root, site, report = built
    assert report.experiments == 1 and not report.skipped_experiments and not report.skipped
    assert report.lines()[-1].startswith("built 9 pages from 2 records (0 skipped) in 1 tables, 1 experiment (0 skipped)")
    page = page_of(site, "experiments/sim2.html")
    data = summary()
    assert page.find("h1").text() == data["title"]
    text = page.text()
    for part in ("reproduces Table 4, §6.2", data["description"], "seeds 0 and 1 averaged",
                 "the 65% sample at 50% did not finish", "folder sim2"):
        assert part in text, part
    assert page.find("pre").text() == data["command"]
    headers = [th.text() for th in page.find("table", id="experiment-table").find("thead").find_all("th")]
    assert headers == ["Sample", "% of q. match", "Model", "Queries", "R@10", "p (vs Gen_R)", "Record"]
    rows = table_cells(page)
    assert [r[:6] for r in rows] == [
        ["100%", "0%", "Gen_R", "1,200", "0.800", "—"],
        ["100%", "0%", "Gen_R+S", "1,200", "0.842‡", "2.0e-05"],  # the ‡ on the metric, not on p
        ["65%", "50%", "Gen_R+S", "780", "—", "0.300"],
    ]
    tds = page.find("table", id="experiment-table").find("tbody").find_all("tr")[1].find_all("td")
    assert tds[4].find("sup", class_="sig").text() == "‡" and tds[4].attrs["title"] == "R@10 = 0.84216"
    assert "num" in tds[3].classes() and "num" not in tds[0].classes()
    legend = page.find("p", class_="legend").text()
    assert "‡ on a value in the R@10 column" in legend


def test_rows_link_to_their_records_on_the_site_when_collected(built):
    root, site, _ = built
    page = page_of(site, "experiments/sim2.html")
    trs = page.find("table", id="experiment-table").find("tbody").find_all("tr")
    links = [tr.find_all("td")[-1] for tr in trs]
    hrefs = [a.attrs["href"] for a in links[0].find_all("a") + links[1].find_all("a")]
    assert [h.split("#")[0] for h in hrefs] == ["../submissions/rec_t5.html", "../submissions/joint_t5.html"]
    assert links[1].text() == "Gen_R+S on sim2"
    for href in hrefs:  # the anchor is the record's section on the submission page
        target, anchor = href.split("#")
        sub = page_of(site / "experiments", target)
        assert sub.find("section", id=anchor).find("h2").text().startswith("sim2")
    assert not links[2].find_all("a")
    assert links[2].text() == "results/sim2-65/joint_t5/record.json (record not found under the records folder)"


def test_a_skipped_record_is_named_not_linked(tmp_path):
    root = tmp_path / "results"
    write_experiment(root / "sim2")
    (root / "sim2" / "results" / "sim2" / "rec_t5" / "record.json").write_text("{}")
    report = build_site(root, tmp_path / "site")
    assert [s.path for s in report.skipped] == ["sim2/results/sim2/rec_t5/record.json"]
    table = page_of(tmp_path / "site", "experiments/sim2.html").find("table", id="experiment-table")
    cells = [tr.find_all("td")[-1] for tr in table.find("tbody").find_all("tr")]
    assert not cells[0].find_all("a") and cells[1].find_all("a")
    assert "(record skipped (see the build report))" in cells[0].text()


def test_figures_are_copied_and_embedded_with_their_alt_text(built):
    root, site, _ = built
    page = page_of(site, "experiments/sim2.html")
    imgs = page.find_all("img")
    assert [(img.attrs["src"], img.attrs["alt"]) for img in imgs] == [
        ("sim2/figures/sim2.svg", "R@10 of Gen_R+S against % of query match")]
    copied = site / "experiments" / imgs[0].attrs["src"]
    assert copied.read_bytes() == (root / "sim2" / "figures" / "sim2.svg").read_bytes()
    assert "<script" not in page.find("figure").text()  # the SVG is an <img>: its script never runs


def test_experiments_index_and_nav_link_on_every_page(built):
    _, site, _ = built
    index = page_of(site, "experiments/index.html")
    row = index.find("tr", data_experiment="sim2")
    assert row.find("a").attrs["href"] == "sim2.html" and row.find("a").text() == summary()["title"]
    assert [td.text() for td in row.find_all("td")] == ["sim2", "Table 4, §6.2", "sim2", "3", "1"]
    for path in sorted(site.rglob("*.html")):
        nav = parse_html(path.read_text()).find("nav", aria_label="Site")
        links = {a.text(): a.attrs["href"] for a in nav.find_all("a")}
        depth = len(path.relative_to(site).parts) - 1
        assert links["Experiments"] == "../" * depth + "experiments/index.html", path


def test_no_experiments_no_link_and_no_pages(tmp_path):
    root = tmp_path / "results"
    write_records(root, [synthetic_record(LINEUP[0], "sim1")])
    report = build_site(root, tmp_path / "site")
    assert report.experiments == 0 and " tables -> " in report.lines()[-1]
    assert not (tmp_path / "site" / "experiments").exists()
    assert "Experiments" not in (tmp_path / "site" / "index.html").read_text()


def test_mark_column_is_metric_key_or_the_first_float_column_and_no_legend_without_flags(tmp_path):
    root = tmp_path / "results"
    keyed = summary(name="keyed", metric_key="p")
    # no flag, or null (not tested), on every row; a null record is no record
    unflagged = summary(name="unflagged", rows=[{**{k: v for k, v in r.items() if k != "significant"},
                                                 **({"significant": None, "record": None} if i else {})}
                                                for i, r in enumerate(summary()["rows"])])
    write_experiment(root / "keyed", keyed)
    write_experiment(root / "unflagged", unflagged, records=False)
    build_site(root, tmp_path / "site")
    keyed_page = page_of(tmp_path / "site", "experiments/keyed.html")
    assert table_cells(keyed_page)[1][4:6] == ["0.842", "2.0e-05‡"]
    assert "in the p (vs Gen_R) column" in keyed_page.find("p", class_="legend").text()
    plain = page_of(tmp_path / "site", "experiments/unflagged.html")
    assert "‡" not in plain.find("table", id="experiment-table").text() and "‡" not in plain.find("p", class_="legend").text()
    assert [tr.find_all("td")[-1].text() for tr in plain.find("tbody").find_all("tr")][1:] == ["", ""]


def test_same_name_in_two_folders_both_shown_told_apart_by_folder(tmp_path):
    root = tmp_path / "results"
    write_experiment(root / "run-a" / "sim2")
    write_experiment(root / "run-b" / "sim2", summary(title="SIM2 again"), records=False)
    report = build_site(root, tmp_path / "site")
    assert report.experiments == 2
    index = page_of(tmp_path / "site", "experiments/index.html")
    rows = index.find("tbody").find_all("tr")
    assert [tr.find_all("td")[2].text() for tr in rows] == ["run-a/sim2", "run-b/sim2"]
    hrefs = [tr.find("a").attrs["href"] for tr in rows]
    assert len(set(hrefs)) == 2 and all(h.startswith("sim2-") for h in hrefs)
    pages = {h: page_of(tmp_path / "site", f"experiments/{h}") for h in hrefs}
    assert [p.find("h1").text() for p in pages.values()] == [summary()["title"], "SIM2 again"]
    assert "folder run-b/sim2" in pages[hrefs[1]].text()
    # each page's figure is its own copy
    srcs = [p.find("img").attrs["src"] for p in pages.values()]
    assert len(set(srcs)) == 2 and all((tmp_path / "site" / "experiments" / s).is_file() for s in srcs)


def test_an_experiment_named_index_does_not_replace_the_list(tmp_path):
    root = tmp_path / "results"
    write_experiment(root / "x", summary(name="index", title="Named index"))
    write_records(root / "subs", [synthetic_record(LINEUP[3], "sim1")])
    record = json.loads((root / "subs" / "sim1" / "pop_rec" / "record.json").read_text())
    record["submission"]["name"] = "index"
    (root / "subs" / "sim1" / "pop_rec" / "record.json").write_text(json.dumps(record))
    build_site(root, tmp_path / "site")
    for folder, title, shown in (("experiments", "Experiments", "Named index"), ("submissions", "Submissions", "Pop_R")):
        listing = page_of(tmp_path / "site", f"{folder}/index.html")
        assert listing.find("h1").text() == title
        href = next(a.attrs["href"] for a in listing.find("tbody").find_all("a") if a.text() == shown)
        assert href.startswith("index-") and (tmp_path / "site" / folder / href).is_file()


# --- validation -----------------------------------------------------------------------------------


def _drop(key):
    def mutate(data):
        del data[key]
    return mutate


def _set(path, value):
    def mutate(data):
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return mutate


BAD = [
    ("kind", _set(["kind"], "jsr-harness record"), "$.kind: 'jsr-harness record' is not 'jsr-harness experiment'"),
    ("newer", _set(["version"], 2), "$.version: the summary is version 2; this harness reads version 1: upgrade the harness"),
    ("version-type", _set(["version"], "1"), "$.version: 1 was expected"),
    ("missing", _drop("command"), "$: 'command' is a required property"),
    ("columns-type", _set(["columns"], "sample"), "$.columns: 'sample' is not of type 'array'"),
    ("row-value", _set(["rows", 0, "R@10"], [0.8]), "$.rows[0]['R@10']: [0.8] is not of type"),
    ("row-bool", _set(["rows", 0, "n"], True), "$.rows[0].n: True is not of type"),
    ("significant", _set(["rows", 1, "significant"], "yes"), "$.rows[1].significant: 'yes' is not of type 'boolean'"),
    ("unknown-key", _set(["calibration"], 1), "$: Additional properties are not allowed ('calibration' was unexpected)"),
    ("unsafe-name", _set(["name"], "../sim2"), "$.name: '../sim2' does not match"),
    ("alt", _set(["figures", 0], {"file": "figures/sim2.svg"}), "$.figures[0]: 'alt' is a required property"),
    ("duplicate-column", _set(["columns", 1, "key"], "sample"), "$.columns[1].key: 'sample' names an earlier column too"),
    ("metric-key", _set(["metric_key"], "R@30"), "$.metric_key: 'R@30' is not one of the column keys"),
    ("record-absolute", _set(["rows", 0, "record"], "/etc/record.json"), "$.rows[0].record: '/etc/record.json' is not a path relative"),
    ("figure-escapes", _set(["figures", 0, "file"], "../secret.svg"), "$.figures[0].file: '../secret.svg' leads out of the experiment folder"),
    ("figure-absolute", _set(["figures", 0, "file"], "/tmp/x.svg"), "$.figures[0].file: '/tmp/x.svg' is not a path relative"),
    ("figure-missing", _set(["figures", 0, "file"], "figures/nope.png"), "$.figures[0].file: 'figures/nope.png': no such file"),
    ("figure-kind", _set(["figures", 0, "file"], "figures/sim2.pdf"), "$.figures[0].file: 'figures/sim2.pdf' is not an .svg or .png file"),
]


@pytest.mark.parametrize("name, mutate, message", BAD, ids=[b[0] for b in BAD])
def test_bad_summaries_are_skipped_naming_the_file_and_key(tmp_path, name, mutate, message):
    root = tmp_path / "results"
    data = summary()
    mutate(data)
    write_experiment(root / "bad", data, records=False)
    (root / "bad" / "figures" / "sim2.pdf").write_text("%PDF")
    (root / "secret.svg").write_text(SVG)  # exists, but outside the experiment's folder
    write_experiment(root / "good", summary(name="good"), records=False)
    report = build_site(root, tmp_path / "site")
    assert [s.path for s in report.skipped_experiments] == ["bad/experiment.json"]
    reason = report.skipped_experiments[0].reason
    assert reason.startswith("bad/experiment.json: ") and message in reason, reason
    assert str(tmp_path) not in reason
    assert report.experiments == 1 and not (tmp_path / "site" / "experiments" / "sim2.html").exists()
    assert f"skipped {reason}" in report.lines()
    page = (tmp_path / "site" / "report.html").read_text()
    assert "Skipped experiment summaries" in page and "bad/experiment.json" in page


def test_not_json_and_not_an_object(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "experiment.json").write_text('{"kind": ')
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "experiment.json").write_text("[]")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "experiment.json").write_text('{"version": NaN}')
    with pytest.raises(HarnessError, match=r"^a/experiment.json:1:10: not valid JSON"):
        read_experiment(tmp_path / "a" / "experiment.json", tmp_path)
    with pytest.raises(HarnessError, match=r"^b/experiment.json: \$: an experiment summary must be a JSON object, got list"):
        read_experiment(tmp_path / "b" / "experiment.json", tmp_path)
    with pytest.raises(HarnessError, match="NaN is not allowed"):
        read_experiment(tmp_path / "c" / "experiment.json", tmp_path)


def test_strict_cli_fails_on_a_skipped_summary(tmp_path, capsys):
    root = tmp_path / "results"
    write_experiment(root / "sim2")
    out = tmp_path / "site"
    assert main(["leaderboard", "build", "--records", str(root), "--out", str(out), "--strict"]) == 0
    assert "1 experiment (0 skipped)" in capsys.readouterr().out
    write_experiment(root / "broken", summary(version=3), records=False)
    assert main(["leaderboard", "build", "--records", str(root), "--out", str(out), "--strict"]) == 1
    assert "skipped broken/experiment.json: $.version" in capsys.readouterr().out


# --- escaping, determinism, sites inside the records folder ---------------------------------------


def test_every_string_of_a_summary_is_escaped(tmp_path):
    root = tmp_path / "results"
    data = summary(title=XSS, paper=XSS, description=XSS, command=XSS, notes=[XSS],
                   columns=[{"key": XSS, "label": XSS}, {"key": "R@10", "label": "R@10"}],
                   rows=[{XSS: XSS, "R@10": 0.5, "significant": True, "record": XSS}],
                   figures=[{"file": "figures/sim2.svg", "alt": XSS}])
    write_experiment(root / "sim2", data)
    build_site(root, tmp_path / "site")
    for path in sorted((tmp_path / "site").rglob("*.html")):
        html = path.read_text()
        assert "<script>alert" not in html, path
        assert html.count("<script") == 1, path
    page = page_of(tmp_path / "site", "experiments/sim2.html")
    assert page.find("h1").text() == XSS and page.find("img").attrs["alt"] == XSS
    assert table_cells(page)[0][0] == XSS
    assert (tmp_path / "site" / "experiments" / "sim2.html").read_text().count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 9


def test_same_bytes_wherever_the_experiment_lies(tmp_path):
    root = tmp_path / "results"
    write_experiment(root / "sim2")
    write_experiment(root / "bad", summary(version=2), records=False)
    other = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, other)
    build_site(root, tmp_path / "a")
    build_site(other, tmp_path / "b" / "site")
    a, b = site_files(tmp_path / "a"), site_files(tmp_path / "b" / "site")
    assert a == b and "experiments/sim2.html" in a and "experiments/sim2/figures/sim2.svg" in a
    build_site(root, tmp_path / "a")
    assert site_files(tmp_path / "a") == a


def test_a_site_inside_the_records_folder_is_never_read_back(tmp_path):
    root = tmp_path / "results"
    write_experiment(root / "sim2")
    first = build_site(root, root / "site")
    # a built site is pruned like units/: even records and summaries placed inside it are not read
    (root / "site" / "stray").mkdir()
    (root / "site" / "stray" / "record.json").write_text("{}")
    shutil.copy(root / "sim2" / "experiment.json", root / "site" / "stray" / "experiment.json")
    second = build_site(root, root / "site")
    assert (first.records, first.experiments, first.skipped, first.skipped_experiments) == (2, 1, [], [])
    assert (second.records, second.experiments, second.skipped, second.skipped_experiments) == (2, 1, [], [])
    assert all("site" not in p.relative_to(root).parts for p in find_record_folders(root))
    marked = tmp_path / "marked"
    shutil.copytree(root / "sim2", marked / "x")
    (marked / SITE_MARKER).write_text("")
    assert collect(marked).records == [] and collect(marked).experiments == []


def test_the_experiment_writer_output_is_accepted(tmp_path):
    """The lead's writer (harness/experiments/summary.py) and this reader agree on the format."""
    summary_module = pytest.importorskip("harness.experiments.summary")
    folder = tmp_path / "sim2"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "sim2.svg").write_text(SVG)
    written = summary_module.Summary(
        name="sim2", title="SIM2", paper="Table 4", description="d", command="python -m harness experiment run sim2",
        columns=[("level", "% of q. match"), ("R@10", "R@10")],
        rows=[{"level": "0%", "R@10": float("nan"), "significant": False}, {"level": "50%", "R@10": 0.5}],
        figures=[{"file": "figures/sim2.svg", "alt": "R@10 against % of query match"}], notes=["n"],
    ).write(folder)
    loaded = read_experiment(written, tmp_path)
    assert loaded.name == "sim2" and loaded.folder == "sim2" and loaded.data["rows"][0]["R@10"] is None


@pytest.mark.parametrize("value, text", [(0.84216, "0.842"), (1200, "1,200"), (0.0, "0.000"), (2e-05, "2.0e-05"),
                                         (-0.0001, "-1.0e-04"), (0.0005, "0.001"), (12345.678, "12,345.678")])
def test_format_number(value, text):
    assert format_number(value) == text
