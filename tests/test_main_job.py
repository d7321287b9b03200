"""The README's main job, end to end on a tiny preset: `python -m harness run submissions/joint_t5` trains the
references first and leaves a site whose simulation pages show Gen_R, Gen_S and Gen_R+S with the improvement,
the significance mark where the record has it, and the §7 diagnostics as tables."""

from __future__ import annotations

import html
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.compile import build_dataset
from harness.records.validate import read_record

REPO = Path(__file__).resolve().parents[1]
TRIO = ("joint_t5", "rec_t5", "search_t5")
TINY_PARAMS = """[params]
backbone = "t5-offline-tiny"
deepspeed_config = "deepspeed.json"
epochs = 2
batch_size = 16
learning_rate = 0.01
max_history = 1
valid_max_examples = 8
progress = false
threads = 1
"""


def tiny_copy(root: Path, name: str) -> Path:
    """A shipped generative submission with its [params] swapped for the tiny test preset (same tasks, datasets,
    references and DeepSpeed config)."""
    src, dst = REPO / "submissions" / name, root / name
    shutil.copytree(src, dst)
    text = (src / "config.toml").read_text()
    (dst / "config.toml").write_text(text[: text.index("[params]")] + TINY_PARAMS)
    return dst


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("main-job")
    subs = root / "submissions"
    for name in TRIO:
        tiny_copy(subs, name)
    datasets = tomllib.loads((subs / "joint_t5" / "config.toml").read_text())["submission"]["datasets"]
    for name in datasets:
        build_dataset(name)
    out = root / "leaderboard" / "results"
    assert main(["run", str(subs / "joint_t5"), "--out", str(out), "--no-progress"]) == 0
    return out, datasets


def test_the_shipped_main_job_runs_the_simulations():
    config = tomllib.loads((REPO / "submissions" / "joint_t5" / "config.toml").read_text())
    assert {"sim1", "sim2", "sim3"} <= set(config["submission"]["datasets"])
    assert config["references"] == {"rec": "rec_t5", "search": "search_t5"}


def test_each_simulation_page_shows_the_three_generative_rows_with_improvement(main_job):
    out, datasets = main_job
    site = out.parent / "site"
    for dataset in datasets:
        page = (site / f"dataset-{dataset}.html").read_text()
        joint = read_record(out / dataset / "joint_t5" / "record.json")
        for name in TRIO:
            assert f'<tr data-submission="{name}">' in page, (dataset, name)
        # The joint row carries an improvement on every served column of the headline table; ‡ exactly where the
        # record's paired test says so.
        row = _row(page, "joint_t5", joint["protocol"]["params"]["headline_k"])
        assert len(re.findall(r'<span class="improv[^"]*">\(', row)) == 6
        expected_marks = sum(t["significant"] for rows in joint["significance"].values() for t in rows)
        assert row.count('<sup class="sig">') == expected_marks
        assert len(joint["significance"]["rec"]) == 3 and len(joint["significance"]["search"]) == 3
        assert "no improvement shown" not in page


def test_each_simulation_page_renders_the_diagnostics_as_tables(main_job):
    out, datasets = main_job
    site = out.parent / "site"
    for dataset in datasets:
        page = (site / f"dataset-{dataset}.html").read_text()
        joint = read_record(out / dataset / "joint_t5" / "record.json")
        assert "Why? The paper&#39;s §7 diagnostics" in page or "Why? The paper's §7 diagnostics" in page
        for caption in ("H1: popularity of the predicted items (Table 6)",
                        "H2: where the changed predictions win (Table 7)",
                        "Redundant and non-redundant item pairs (Table 8)"):
            assert caption in page, (dataset, caption)
        # Read back: the shown numbers are the record's.
        rec = joint["diagnostics"]["rec"]
        assert rec["reference"] == "rec_t5" and joint["diagnostics"]["search"]["reference"] == "search_t5"
        h1 = rec["h1"]["all"]
        cells = _table_rows(page, "H1: popularity of the predicted items (Table 6)")
        assert cells[0][:5] == ["Recommendation", "search training data", f"{h1['n']:,}",
                                f"{h1['reference_mean']:.2f}", f"{h1['joint_mean']:.2f}"]
        groups = rec["redundancy"]["groups"]
        t8 = _table_rows(page, "Redundant and non-redundant item pairs (Table 8)")
        assert t8[0][2] == f"{groups['redundant']['n_requests']:,}"
        assert t8[0][3] == f"{rec['redundancy']['redundant_pairs']:,}"


def _row(page: str, submission: str, k: int, measure: str = "R") -> str:
    panel = page[re.search(rf'<section class="k-panel[^"]*" data-group="[^"]*" data-k="{k}" data-measure="{measure}">',
                           page).start():]
    start = panel.index(f'<tr data-submission="{submission}">')
    return panel[start: panel.index("</tr>", start)]


def _table_rows(page: str, caption: str) -> list[list[str]]:
    start = page.index(caption)
    body = page[page.index("<tbody>", start): page.index("</tbody>", start)]
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    return [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, flags=re.S)] for r in rows]
