"""A trained baseline's parameter sweep: every configuration of a grid run through the harness, one table.

    python tools/tune_baseline.py submissions/sasrec ml-small loss=bce,ce max_len=50,200 [--seeds 0 1] [--jobs 2]

Each `key=v1,v2,...` is a [params] key and its values (TOML literals: 0.001, "ce", true, [300]); the grid is
their product, on top of the submission's own [params]. Every configuration is a copy of the submission with
those params (under --work, default /tmp/tune-<submission>), run with `python -m harness run` on the dataset
and seeds, so it is trained, stopped and scored exactly as the shipped one would be. The table gives, per
configuration: the validation Recall@K of the kept epoch (what a choice must rest on: rec_valid predicts item
t-1 from 1..t-2), the kept and the last epoch, the training time, and the test Recall@K (all / head / torso),
which is printed to show what the choice gave, never to make it. Rows are sorted by validation. docs/baselines.md
records the grids that chose the shipped values, with this command.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def parse_grid(items: list[str]) -> dict[str, list]:
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"tune_baseline: {item!r} is not key=v1,v2,...")
        # Commas inside a TOML list ([200, 600]) belong to the value: split only at top level.
        parts, depth, cur = [], 0, ""
        for ch in values:
            depth += ch == "["
            depth -= ch == "]"
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        grid[key] = [toml_literal(p.strip()) for p in parts]
    return grid


def toml_literal(text: str):
    """A TOML literal (0.001, true, [300], "ce"); a bare word (ce) is taken as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def toml_value(value) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(base: Path, params: dict, dest: Path) -> None:
    """The submission's config.toml with `params` set in [params] (a changed line, or a new one)."""
    lines = (base / "config.toml").read_text().splitlines()
    out, in_params, done = [], False, set()
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if in_params:
                out.extend(f"{k} = {toml_value(v)}" for k, v in params.items() if k not in done)
                done |= set(params)
            in_params = stripped == "[params]"
        key = stripped.split("=", 1)[0].strip() if in_params and "=" in stripped else None
        if key in params:
            out.append(f"{key} = {toml_value(params[key])}")
            done.add(key)
        else:
            out.append(line)
    if in_params:
        out.extend(f"{k} = {toml_value(v)}" for k, v in params.items() if k not in done)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.toml").write_text("\n".join(out) + "\n")


def run_one(base: Path, dataset: str, seeds: list[int], params: dict, work: Path, name: str) -> dict:
    sub = work / "submissions" / name
    write_config(base, params, sub)
    out = work / "results"
    log = work / f"{name}.{dataset}.log"
    cmd = [sys.executable, "-m", "harness", "run", str(sub), "-d", dataset, "--seeds", *map(str, seeds),
           "--out", str(out), "--no-site", "--no-references", "--no-progress"]
    with open(log, "w") as fh:
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy())
    record_path = out / dataset / name / "record.json"
    if not record_path.is_file():
        return {"params": params, "error": f"no record; see {log}"}
    record = json.loads(record_path.read_text())
    k = record["dataset"]["headline_k"]
    valid, kept, last, secs = [], [], [], []
    for unit in record["units"]:
        info = unit.get("adapter_info") or {}
        curve = info.get("valid_recall_per_epoch") or []
        if unit.get("status") != "ok" or not curve:
            return {"params": params, "error": f"unit failed; see {record_path}"}
        kept.append(info["best_epoch"])
        last.append(info["epochs_run"])
        valid.append(curve[info["best_epoch"] - 1])
        secs.append(info["train_seconds"])
    test = {seg: record["metrics"]["rec"][f"R@{k}{seg}"]["mean"] for seg in ("", "/head", "/torso")}
    return {"params": params, "k": k, "valid": statistics.mean(valid), "kept": kept, "last": last,
            "seconds": statistics.mean(secs), "test": test}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("submission", type=Path)
    ap.add_argument("dataset")
    ap.add_argument("grid", nargs="*", help="key=v1,v2,... ([params] values, TOML literals)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--jobs", type=int, default=1, help="configurations trained at once (one torch thread each)")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args(argv)
    grid = parse_grid(args.grid)
    base = args.submission.resolve()
    work = (args.work or Path("/tmp") / f"tune-{base.name}").resolve()
    configs = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    names = [base.name + "".join(f"-{k}{toml_value(v)}" for k, v in c.items()).replace('"', "").replace(" ", "")
             .replace("[", "").replace("]", "").replace(",", "_") for c in configs]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda c_n: run_one(base, args.dataset, args.seeds, c_n[0], work, c_n[1]),
                             zip(configs, names)))
    ok = sorted((r for r in rows if "error" not in r), key=lambda r: -r["valid"])
    print(f"{base.name} on {args.dataset}, seeds {args.seeds}; grid {grid}")
    print("| params | valid R@K (kept epoch) | kept / last epoch | train s | test R@K all / head / torso |")
    print("| --- | --- | --- | --- | --- |")
    for r in ok:
        t = r["test"]
        print(f"| {r['params']} | {r['valid']:.4f} | {r['kept']} / {r['last']} | {r['seconds']:.0f} | "
              f"{t['']:.3f} / {t['/head']:.3f} / {t['/torso']:.3f} |")
    for r in rows:
        if "error" in r:
            print(f"| {r['params']} | failed: {r['error']} |")


if __name__ == "__main__":
    main()
