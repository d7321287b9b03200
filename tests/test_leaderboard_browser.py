"""The leaderboard as a reader sees it: records made by the real runner on sim1, the site built from them,
opened in headless Chromium (Debian's `chromium`; CI installs it).

Chromium is driven from the command line only: `--dump-dom` prints the DOM after the page's script ran,
and `--screenshot` saves what it looks like. Sorting is checked through the page's own fragment hook,
`#sort=TABLE:COLUMN:DIRECTION`, which clicks the column's header button (`button.click()`, the same
handler a mouse click runs) until the table is sorted that way; the dumped DOM then shows the row order.
This needs no DevTools-protocol client (no websocket package is a dependency of this project).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.leaderboard import build_site
from harness.records.validate import read_record
from test_leaderboard import XSS, board_rows, cell_value, parse_html

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "leaderboard"


def _find_chromium() -> str | None:
    for name in (os.environ.get("HARNESS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = _find_chromium()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed (apt-get install -y chromium; "
                                                "CI installs it); set HARNESS_CHROMIUM to use another binary"),
]


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={profile}", *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(tmp_path: Path, url: str, *extra: str):
    return parse_html(chromium(tmp_path, *extra, "--dump-dom", url))


# --- records from the runner --------------------------------------------------------------------------

# Ranks by the training popularity of both tasks together: a stand-in for a joint model, so the runner
# computes real paired tests against Pop_R and Pop_S. Seed 1 fails, as a diverging training run would.
JOINT_ADAPTER = """
import numpy as np
from harness.protocol.adapter import Adapter

class JointPopularity(Adapter):
    def fit(self, train):
        if self.seed == 1:
            raise RuntimeError("loss became NaN at step 1200")
        counts = train.catalogue.popularity("rec") + train.catalogue.popularity("search")
        self.order = np.argsort(-counts, kind="stable")

    def retrieve(self, task, requests, k):
        return np.broadcast_to(self.order[:k], (len(requests), k))
"""


def write_submission(root: Path, name: str, *, display_name: str, kind: str, tasks, seeds, references=None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    refs = "".join(f'{task} = "{ref}"\n' for task, ref in (references or {}).items())
    (folder / "config.toml").write_text(textwrap.dedent(f"""
        [submission]
        display_name = {json.dumps(display_name)}
        adapter = "adapter.py:JointPopularity"
        kind = "{kind}"
        tasks = {json.dumps(list(tasks))}
        datasets = ["sim1"]
        seeds = {json.dumps(list(seeds))}
        """) + (f"[references]\n{refs}" if refs else ""))
    (folder / "adapter.py").write_text(textwrap.dedent(JOINT_ADAPTER))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(records folder, site folder) after running Pop_R, Pop_S, a joint stand-in and a hostile name on sim1."""
    tmp = tmp_path_factory.mktemp("leaderboard-e2e")
    build_dataset("sim1")
    results, site = tmp / "results", tmp / "site"
    for name in ("pop_rec", "pop_search"):
        assert main(["run", str(REPO / "submissions" / name), "-d", "sim1", "--out", str(results), "--no-progress"]) == 0
    joint = write_submission(tmp / "subs", "joint_pop", display_name="Joint_Pop", kind="generative",
                             tasks=("rec", "search"), seeds=(0, 1), references={"rec": "pop_rec", "search": "pop_search"})
    hostile = write_submission(tmp / "subs", "hostile", display_name=XSS, kind="baseline", tasks=("rec",), seeds=(0,))
    for name in ("pop_rec", "pop_search"):  # references are sibling folders; their finished units are reused
        shutil.copytree(REPO / "submissions" / name, tmp / "subs" / name)
    assert main(["run", str(joint), "--out", str(results), "--no-progress"]) == 1  # seed 1 fails, on purpose
    assert main(["run", str(hostile), "--out", str(results), "--no-progress"]) == 0
    write_experiment(results)
    report = build_site(results, site)
    assert report.records == 4 and not report.skipped
    assert report.experiments == 1 and not report.skipped_experiments
    return results, site


def write_experiment(results: Path) -> Path:
    """An experiment summary over the runner's records, as `harness experiment run` writes one: a table
    of R@10 per submission with the joint model's test, rows linking their records, and two figures
    made by matplotlib (an SVG and a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = records(results)
    folder = results / "exp-demo"
    (folder / "figures").mkdir(parents=True)
    tests = {row["metric"]: row for row in recs["joint_pop"]["significance"]["rec"]}
    rows = []
    for name in ("pop_rec", "pop_search", "joint_pop"):
        row = {"model": recs[name]["submission"]["display_name"], "task": "rec",
               "R@10": recs[name]["metrics"]["rec"]["R@10"]["mean"], "record": f"../sim1/{name}/record.json"}
        if name == "joint_pop":
            row.update(p=tests["R@10"]["p_holm"], significant=tests["R@10"]["significant"])
        rows.append(row)
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.bar([r["model"] for r in rows], [r["R@10"] for r in rows])
    ax.set_xlabel("submission")
    ax.set_ylabel("R@10 (recommendation)")
    fig.tight_layout()
    fig.savefig(folder / "figures" / "recall.svg", metadata={"Date": None})
    fig.savefig(folder / "figures" / "recall.png", dpi=60)
    plt.close(fig)
    summary = {
        "kind": "jsr-harness experiment", "version": 1, "name": "exp-demo", "title": "Joint popularity on sim1",
        "paper": "Table 5 (stand-in)", "description": "The runner's records of this test, as an experiment.",
        "command": "python -m harness experiment run exp-demo",
        "columns": [{"key": "model", "label": "Model"}, {"key": "task", "label": "Task"},
                    {"key": "R@10", "label": "R@10"}, {"key": "p", "label": "p (Holm)"}],
        "rows": rows,
        "figures": [{"file": "figures/recall.svg", "alt": "R@10 per submission (SVG)"},
                    {"file": "figures/recall.png", "alt": "R@10 per submission (PNG)"}],
        "notes": ["seed 1 of Joint_Pop fails on purpose"], "harness_version": "0.1.0",
    }
    (folder / "experiment.json").write_text(json.dumps(summary))
    return folder


def records(results: Path) -> dict[str, dict]:
    return {p.parent.name: read_record(p) for p in sorted((results / "sim1").glob("*/record.json"))}


def sim1_table(page, k: int, measure: str = "R"):
    """The sim1 table of one measure at one cutoff (Recall's ids have no measure in them: GROUP-kK)."""
    suffix = f"-k{k}" if measure == "R" else f"-{measure}-k{k}"
    tables = [t for t in page.find_all("table", class_="board") if t.attrs["id"].startswith("sim1-")
              and t.attrs["id"].endswith(suffix) and (measure != "R" or t.attrs["id"].count("-") == 3)]
    assert len(tables) == 1
    return tables[0]


# --- the checks ------------------------------------------------------------------------------------


def test_tables_marks_and_escaping_as_rendered(built, tmp_path):
    results, site = built
    recs = records(results)
    page = dump_dom(tmp_path, (site / "index.html").as_uri())
    assert "js" in page.find("html").classes()  # the script ran
    assert page.find("body").attrs.get("data-ready") == "true"
    assert len(page.find_all("script")) == 1  # the page's own: the hostile display name stayed text
    assert [b.text() for b in page.find_all("button", class_="sort")][:7] == ["Submission", "All", "Head", "Torso",
                                                                               "All", "Head", "Torso"]
    table = sim1_table(page, 10)
    rows = dict(board_rows(table))
    assert set(rows) == {"pop_rec", "pop_search", "joint_pop", "hostile"}
    columns = [(task, seg) for task in ("rec", "search") for seg in ("", "/head", "/torso")]
    for name, cells in rows.items():
        record = recs[name]
        for (task, seg), text in zip(columns, cells):
            if task not in record["submission"]["tasks"]:
                assert text == "n/a", (name, task)
            else:
                assert cell_value(text) == f"{record['metrics'][task][f'R@10{seg}']['mean']:.3f}", (name, task, seg)
    # significance marks exactly where the joint record's Holm-corrected tests say so
    joint_row = table.find("tr", data_submission="joint_pop")
    tests = {(task, row["metric"]): row["significant"] for task, rows_ in recs["joint_pop"]["significance"].items()
             for row in rows_}
    assert len(tests) == 6  # the runner tested R@10 all/head/torso for both tasks
    for (task, seg), td in zip(columns, joint_row.find_all("td")):
        assert bool(td.find_all("sup", class_="sig")) == tests[(task, f"R@10{seg}")], (task, seg)
    assert "1/2 seeds failed" in joint_row.text()
    # what used to be on hover only is on the page: queries per column (under the sort button), seeds per row
    heads = table.find("thead").find_all("tr")[1].find_all("th")
    for th, (task, seg) in zip(heads, columns):
        n = recs["pop_rec"]["metrics"][task][f"R@10{seg}"]["n"]
        assert th.find("button", class_="sort").text() == {"": "All", "/head": "Head", "/torso": "Torso"}[seg]
        assert th.find("span", class_="n").text() == f"n = {n:,}" + (" (few)" if n < 30 else "")
    for name, record in recs.items():  # the finished seeds, and where there are several, the spread over them
        row = table.find("tr", data_submission=name)
        finished = sum(unit["status"] == "ok" for unit in record["units"])
        assert row.find("span", class_="seeds").text() == f"{finished} seed{'' if finished == 1 else 's'}", name
        per_seed = list(record["metrics"]["rec"]["R@10"]["per_seed"].values())
        spread = row.find_all("td")[0].find_all("span", class_="sd")
        assert [s.text() for s in spread] == ([f"± {statistics.stdev(per_seed):.3f}"] if len(per_seed) > 1 else
                                              [""] if spread else [])
    assert table.find("tr", data_submission="joint_pop").find("span", class_="seeds").text() == "1 seed"  # 1 failed
    hostile = table.find("tr", data_submission="hostile").find("a")
    assert hostile.text() == XSS
    # the other cutoffs are in the page and switchable
    assert {p.attrs["data-k"] for p in page.find_all("section", class_="k-panel")
            if p.attrs["data-group"].startswith("sim1-")} == {"1", "5", "10"}
    assert "hidden" not in page.find("div", class_="k-switch").attrs


def _column_values(table, col: int) -> list[list[str]]:
    """Per row block, the shown values of a column (name column: the display names) in page order."""
    out = []
    for body in table.find_all("tbody", class_="rows"):
        block = []
        for tr in body.find_all("tr"):
            block.append(tr.find("th").find("a").text().strip() if col == 0 else cell_value(tr.find_all("td")[col - 1].text()))
        out.append(block)
    return out


def _expected(values: list[str], descending: bool) -> list[str]:
    numbers = sorted((v for v in values if v not in ("n/a", "—")), key=float, reverse=descending)
    return numbers + [v for v in values if v in ("n/a", "—")]


@pytest.mark.parametrize("col, direction", [(1, "descending"), (1, "ascending"), (4, "descending"), (0, "ascending")])
def test_sorting_by_a_column(built, tmp_path, col, direction):
    _, site = built
    original = parse_html((site / "index.html").read_text())
    table_id = sim1_table(original, 5).attrs["id"]  # a cutoff that is not the default: the hook shows it
    page = dump_dom(tmp_path, f"{(site / 'index.html').as_uri()}#sort={table_id}:{col}:{direction}")
    table = page.find("table", id=table_id)
    header = table.find("th", data_col=str(col))
    assert header.attrs.get("aria-sort") == direction
    assert [h for h in table.find_all("th") if h.attrs.get("aria-sort")] == [header]
    panel = [p for p in page.find_all("section", class_="k-panel") if p.find_all("table", id=table_id)][0]
    assert "active" in panel.classes()
    before, after = _column_values(sim1_table(original, 5), col), _column_values(table, col)
    assert len(after) == 2 and any(len(block) > 1 for block in after)  # both blocks, sorted each on its own
    for block_before, block_after in zip(before, after):
        if col == 0:
            assert block_after == sorted(block_before, key=str.casefold)
        else:
            assert block_after == _expected(block_before, direction == "descending")
    if col == 1 and direction == "descending":
        assert after != before or sorted(before[0]) == before[0]  # the check above is not vacuous


def test_cutoff_switch_from_a_link(built, tmp_path):
    _, site = built
    page = dump_dom(tmp_path, f"{(site / 'index.html').as_uri()}#k=5")
    group = sim1_table(page, 5).attrs["id"].rsplit("-k", 1)[0]
    active = [p.attrs["data-k"] for p in page.find_all("section", class_="k-panel", data_group=group)
              if "active" in p.classes()]
    assert active == ["5"]
    switch = page.find("div", class_="k-switch", data_group=group)
    # the records hold several measures: the cutoff buttons name K alone, the measure switch the measure
    assert [b.text() for b in switch.find_all("button") if b.attrs["aria-pressed"] == "true"] == ["@5"]


def test_measure_switch_from_a_link_keeps_the_cutoff_and_the_recall_tables(built, tmp_path):
    """Records list Recall, nDCG and RR: the page shows Recall first, and a link (or a button) switches every
    group to another measure at the cutoff asked for; only Recall carries the significance marks."""
    _, site = built
    page = dump_dom(tmp_path, f"{(site / 'index.html').as_uri()}#measure=nDCG&k=5")
    table = sim1_table(page, 5, "nDCG")
    group = table.attrs["id"].rsplit("-nDCG-k", 1)[0]
    active = [(p.attrs["data-measure"], p.attrs["data-k"]) for p in page.find_all("section", class_="k-panel", data_group=group)
              if "active" in p.classes()]
    assert active == [("nDCG", "5")]
    switch = page.find("div", class_="measure-switch", data_group=group)
    assert "hidden" not in switch.attrs
    assert [b.text() for b in switch.find_all("button")] == ["Recall", "nDCG", "Reciprocal rank"]
    assert [b.text() for b in switch.find_all("button") if b.attrs["aria-pressed"] == "true"] == ["nDCG"]
    assert table.find("caption").text().startswith("nDCG@5 on sim1")
    assert not table.find_all("sup", class_="sig")  # secondary measures are not tested
    joint = table.find("tr", data_submission="joint_pop").find_all("td")
    assert cell_value(joint[0].text()) not in ("n/a", "—")  # a value, from the record's nDCG@5
    # without a fragment the headline measure and cutoff are shown
    page = dump_dom(tmp_path, (site / "index.html").as_uri())
    active = [(p.attrs["data-measure"], p.attrs["data-k"]) for p in page.find_all("section", class_="k-panel", data_group=group)
              if "active" in p.classes()]
    assert active == [("R", "10")]


# Fragments anyone could type or a broken link could carry: bad escapes (decodeURIComponent throws on "%E0%A4%A"),
# an unknown table, column, direction, cutoff or measure, markup, empty parts. TABLE is the sim1 R@5 table's id.
MALFORMED_FRAGMENTS = [
    "sort=nonexistent:99:sideways",
    "sort=",
    "sort=%E0%A4%A",
    "k=abc&measure=<script>",
    "sort=TABLE:99:descending&k=%E0%A4%A&&=x&measure",
    "sort=TABLE:1:sideways&measure=nDCG\"]&k=5'",
]


@pytest.mark.parametrize("fragment", MALFORMED_FRAGMENTS)
def test_a_malformed_fragment_is_ignored(built, tmp_path, fragment):
    """The page works as without the fragment: the script ran to the end (data-ready), tables are sortable, the
    headline panel shown, nothing sorted, the rows in the page's order."""
    _, site = built
    original = parse_html((site / "index.html").read_text())
    table_id = sim1_table(original, 5).attrs["id"]
    page = dump_dom(tmp_path, f"{(site / 'index.html').as_uri()}#{fragment.replace('TABLE', table_id)}")
    assert page.find("body").attrs.get("data-ready") == "true"
    assert "js" in page.find("html").classes() and page.find_all("button", class_="sort")
    assert not [th for th in page.find_all("th") if th.attrs.get("aria-sort")]
    group = table_id.rsplit("-k", 1)[0]
    assert [(p.attrs["data-measure"], p.attrs["data-k"]) for p in page.find_all("section", class_="k-panel", data_group=group)
            if "active" in p.classes()] == [("R", "10")]
    assert board_rows(sim1_table(page, 10)) == board_rows(sim1_table(original, 10))


def test_the_good_parts_of_a_partly_malformed_fragment_still_apply(built, tmp_path):
    _, site = built
    table_id = sim1_table(parse_html((site / "index.html").read_text()), 5).attrs["id"]
    page = dump_dom(tmp_path, f"{(site / 'index.html').as_uri()}#measure=%E0%A4%A&sort={table_id}:1:ascending&k=x")
    assert page.find("body").attrs.get("data-ready") == "true"
    assert page.find("table", id=table_id).find("th", data_col="1").attrs.get("aria-sort") == "ascending"
    group = table_id.rsplit("-k", 1)[0]
    assert [p.attrs["data-k"] for p in page.find_all("section", class_="k-panel", data_group=group)
            if "active" in p.classes()] == ["5"]


def test_reads_correctly_with_scripts_off(built, tmp_path):
    """A reader with scripts off. Headless Chromium's --dump-dom and --screenshot need scripting themselves
    (--blink-settings=scriptEnabled=false makes them return nothing), so the page is opened from a copy of
    the site with its one script element removed: exactly what a browser without scripts renders."""
    _, site = built
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    html = (copy / "index.html").read_text()
    start, end = html.index("<script>"), html.index("</script>") + len("</script>")
    (copy / "index.html").write_text(html[:start] + html[end:])
    page = dump_dom(tmp_path, (copy / "index.html").as_uri())
    assert not page.find_all("script")
    assert "js" not in page.find("html").classes()  # CSS hides other cutoffs only under html.js
    assert not page.find_all("button", class_="sort")  # headers are plain text
    assert "hidden" in page.find("div", class_="k-switch").attrs  # no dead buttons
    assert "hidden" in page.find("div", class_="measure-switch").attrs
    assert [t.find("caption").text().split(" on ")[0] for t in page.find_all("table", class_="board")] == [
        f"{measure}@{k}{' (headline cutoff)' if k == 10 else ''}" for measure in ("Recall", "nDCG", "Reciprocal rank")
        for k in (10, 1, 5)]  # every measure and cutoff, each saying which it is, the headline first: R@10 on top
    assert "n/a" in sim1_table(page, 10).text() and "Joint_Pop" in sim1_table(page, 10).text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / "index-no-script.png"
    target.unlink(missing_ok=True)
    chromium(tmp_path, "--window-size=1360,2400", f"--screenshot={target}", (copy / "index.html").as_uri())
    assert _png_size(target) == (1360, 2400) and target.stat().st_size > 30_000


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_screenshots_are_saved_as_artifacts(built, tmp_path):
    results, site = built
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = {
        "index.png": site / "index.html",
        "dataset-sim1.png": site / "dataset-sim1.html",
        "submission-joint.png": site / "submissions" / "joint_pop.html",
        "experiment.png": site / "experiments" / "exp-demo.html",
    }
    for name, page in shots.items():
        target = ARTIFACTS / name
        target.unlink(missing_ok=True)
        chromium(tmp_path, "--window-size=1360,1500", f"--screenshot={target}", page.as_uri())
        assert _png_size(target) == (1360, 1500)
        assert target.stat().st_size > 30_000, f"{target} looks blank"  # a white page compresses to a few kB


# Sets each image's natural size on it once the page has loaded: --dump-dom shows attributes, not the
# decoded image. Injected into a copy of the page only; the site itself has no such script.
IMAGE_PROBE = """<script>
window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    img.setAttribute("data-natural-width", img.naturalWidth);
    img.setAttribute("data-complete", img.complete);
  });
  document.body.setAttribute("data-images-checked", "true");
});
</script>"""


def test_experiment_page_table_sorting_and_figures_as_rendered(built, tmp_path):
    results, site = built
    recs = records(results)
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    page_path = copy / "experiments" / "exp-demo.html"
    page_path.write_text(page_path.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    url = f"{page_path.as_uri()}#sort=experiment-table:2:descending"
    page = dump_dom(tmp_path, url, "--virtual-time-budget=5000")
    assert page.find("body").attrs.get("data-ready") == "true"
    assert page.find("body").attrs.get("data-images-checked") == "true"
    imgs = page.find_all("img")
    assert [img.attrs["alt"] for img in imgs] == ["R@10 per submission (SVG)", "R@10 per submission (PNG)"]
    for img in imgs:  # the copied figure was found and decoded
        assert img.attrs["data-complete"] == "true" and int(img.attrs["data-natural-width"]) > 0, img.attrs
    # the table, sorted by R@10 best first, with the joint model's mark as its record's test says
    table = page.find("table", id="experiment-table")
    assert table.find("th", data_col="2").attrs.get("aria-sort") == "descending"
    rows = [[td.text().strip() for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]
    by_model = {r[0]: r for r in rows}
    expected = {}
    for name in ("pop_rec", "pop_search", "joint_pop"):
        display = recs[name]["submission"]["display_name"]
        expected[display] = f"{recs[name]['metrics']['rec']['R@10']['mean']:.3f}"
        assert by_model[display][-1] == f"{display} on sim1"  # the record link
    joint_test = next(r for r in recs["joint_pop"]["significance"]["rec"] if r["metric"] == "R@10")
    assert by_model["Joint_Pop"][2] == expected["Joint_Pop"] + ("‡" if joint_test["significant"] else "")
    assert [r[2].rstrip("‡") for r in rows] == sorted(expected.values(), key=float, reverse=True)
    links = [a.attrs["href"] for a in table.find_all("a")]
    assert all(h.startswith("../submissions/") and "#sim1-" in h for h in links) and len(links) == 3
