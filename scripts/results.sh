#!/usr/bin/env bash
# Reproduce docs/results.md: the shipped models against every baseline, on recordings held out
# from training (the `exclude` lists of models/ecg.toml and models/ppg.toml). Needs ../shared/data.
# Usage: bash scripts/results.sh [OUTDIR]   (default runs/results; ~10 min on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/results}
mkdir -p "$out"
R=.venv/bin/respsep
D=../shared/data
MARSH_TEST=($D/marsh-edf/marsh-{0005,0017,0048,1436,4909,5111,8000}.edf)
CINC_TEST=($D/cinc2015-wfdb/{v146s,v206s,v210s,v212s,v244s,v250s,v256s,v262s,v271l,v402s,v404s,v505l,v623l,v632s,v633l,v641l,v692s,v704s,v732s,v738s}.hea)
set -x
$R eval "${MARSH_TEST[@]}" --signal ecg --ref all --baselines --ref-annotations "end-inspiration thorax" \
   --per-record --json --csv "$out/marsh-ecg.csv" --plot "$out/marsh-ecg.png" > "$out/marsh-ecg.json"
$R eval "${MARSH_TEST[@]}" --signal ppg --ref all --baselines --ref-annotations "end-inspiration thorax" \
   --per-record --json --csv "$out/marsh-ppg.csv" --plot "$out/marsh-ppg.png" > "$out/marsh-ppg.json"
$R eval "${CINC_TEST[@]}" --signal ecg --ref thor --end 270 --baselines --per-record --json \
   --csv "$out/cinc-ecg.csv" > "$out/cinc-ecg.json" || true   # exit 4 when some records have no usable reference
$R eval "${CINC_TEST[@]}" --signal ppg --ref thor --end 270 --baselines --per-record --json \
   --csv "$out/cinc-ppg.csv" > "$out/cinc-ppg.json" || true
set +x
.venv/bin/python scripts/results_md.py "$out" > "$out/tables.md"
echo "tables: $out/tables.md"
