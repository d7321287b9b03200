#!/usr/bin/env bash
# CI gate against quality and speed regressions (docs/gate.md). .ci/run calls it after the test suite, in the
# same environment: the project's venv active, HARNESS_DATA_DIR pointing at the folder with
# ml-latest-small.zip, HARNESS_CACHE_DIR a scratch folder. Run alone from a checkout the same way.
set -euo pipefail
cd "$(dirname "$0")/.."

# The quick profile's datasets (seconds). Their fingerprints are deterministic: the committed baselines in
# bench/baselines/quick were measured on the same ones.
python -m harness data build sim1 sim2 sim3 ml-small

# Quality. Deterministic baselines on the whole quick profile; the bi-encoder and SASRec on the simulations
# only (on ml-small they take minutes: encoding 9.7k items, training on 100k interactions). BERT4Rec and the
# T5 models are not gated here: minutes even on the simulations (gate them locally, docs/gate.md).
python -m harness gate submissions/pop_rec submissions/pop_search submissions/bm25 \
    --baseline bench/baselines/quick --profile quick
python -m harness gate submissions/biencoder submissions/sasrec \
    --baseline bench/baselines/quick --profile sims

# Speed: ratios to references measured in the same run (bench/baselines/speed.json).
python -m harness.gate.speed --limits bench/baselines/speed.json
