#!/usr/bin/env bash
# The short version of the one-shot GPU plan (docs/gpu.md, "One-shot search at the papers' scale"): ENAS,
# DARTS and RS-WS each train their supernet for STEPS steps (default 100) at DARTS's PTB search protocol
# (recipe darts-search: hidden 300, batch 256, BPTT 35) on the GPU, score 5 cells, and print seconds per
# supernet step and the full search's time (5,187 steps) extrapolated from it.
#     PTB=path/to/ptb OUT=/some/dir bash benchmarks/oneshot_gpu.sh     (GPUS=0 STEPS=2: the same on a CPU, as a check)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-.}"
STEPS="${STEPS:-100}"
PTB="${PTB:-../shared/data/ptb}"
for s in rsws enas darts; do
  start=$(date +%s.%N)
  timeout "${ONESHOT_TIMEOUT:-150}" python3 -m cellsearch search --strategy "$s" --space dag --tasks ptb \
      --data-dir "$PTB" --recipe darts-search --budget "$STEPS" --trials 3 -o candidates=5 --gpus-per-trial "${GPUS:-1}" \
      --backend local --name "gpu-$s" --runs "$OUT/oneshot-runs" --no-progress > "$OUT/oneshot-$s.txt" 2>&1
  rc=$?
  end=$(date +%s.%N)
  python3 - "$s" "$rc" "$start" "$end" "$STEPS" "$OUT/oneshot-runs/gpu-$s" <<'PY'
import json, sys
from pathlib import Path
from cellsearch.storage.store import Store
name, rc, start, end, steps, run = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6])
meta = {}
db = run / "results.db"
if db.exists():
    with Store(db, readonly=True) as store:
        meta = {"oneshot": store.get_meta("oneshot")}
train = (meta.get("oneshot") or {}).get("train_seconds")
per_step = train / steps if train else None
print(json.dumps({"strategy": name, "rc": rc, "wall_s": round(end - start, 1), "train_s": train,
                  "s_per_step": per_step, "full_search_h": per_step * 5187 / 3600 if per_step else None}))
PY
done
