#!/usr/bin/env bash
# Reproduce docs/results.md: the shipped models against every baseline, on recordings held out
# from training (the `exclude` lists of models/ecg.toml and models/ppg.toml). Needs ../shared/data.
# Usage: bash scripts/results.sh [OUTDIR]   (default runs/results; ~5 min on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/results}
mkdir -p "$out"
R=.venv/bin/respsep
D=../shared/data
MARSH_TEST=($D/marsh-edf/marsh-{0005,0017,0048,1436,4909,5111,8000}.edf)
CINC_TEST=($D/cinc2015-wfdb/{v146s,v206s,v210s,v212s,v244s,v250s,v256s,v262s,v271l,v402s,v404s,v505l,v623l,v632s,v633l,v641l,v692s,v704s,v732s,v738s}.hea)
set -x
# every group: respsep's default (fusion of ECG and PPG), the separator alone and every single source
$R eval "${MARSH_TEST[@]}" --ref all --baselines --ref-annotations "end-inspiration thorax" \
   --per-record --json --csv "$out/marsh.csv" --plot "$out/marsh.png" > "$out/marsh.json"
$R eval "${CINC_TEST[@]}" --ref thor --end 270 --baselines --per-record --json \
   --csv "$out/cinc.csv" > "$out/cinc.json" || true   # exit 4 when some records have no usable reference
set +x
.venv/bin/python scripts/results_md.py "$out" > "$out/tables.md"
echo "tables: $out/tables.md"
