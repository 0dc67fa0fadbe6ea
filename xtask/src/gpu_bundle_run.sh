#!/usr/bin/env bash
# The GPU check of the specreg CUDA backend, written by `cargo xtask gpu-bundle`.
#
#   ./run.sh [OUT_DIR]      (default: ./gpu-check-out)
#
# Needs an NVIDIA GPU with its driver (libcuda.so.1) and a Python venv holding PyTorch and
# the CUDA 13 wheels (nvidia-cublas, nvidia-cusolver, nvidia-cuda-nvrtc, ...): the venv's
# python is taken from $SPECREG_PYTHON, else /opt/torch/.venv/bin/python3, else python3;
# libcuda.so.1 from $SPECREG_LIBCUDA, else the first one under /usr/local/nvidia or the
# system library folders.
# No Rust toolchain and no network. Within 9 minutes it runs every CUDA test, the GPU
# benches, the PyTorch anchor on CUDA, one calibrated training step per network on CUDA
# and experiment 1 (quick profile) on CUDA, and writes OUT_DIR/summary.md with every
# figure and every failure (the full logs sit beside it). Exit status: 0 when every step
# passed, 1 when a step failed, 2 when a prerequisite is missing (nothing was run).
set -uo pipefail

B="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:-$PWD/gpu-check-out}"
mkdir -p "$OUT" || { echo "run.sh: cannot create $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/summary.md"
START=$(date +%s)
DEADLINE=$((START + 530)) # 9 minutes, less a margin for the summary
FAILED=0

say() { echo "$*" | tee -a "$SUMMARY"; }
{
  echo "# specreg CUDA check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host: $(hostname)"
} >"$SUMMARY"

# ---- Prerequisites: a GPU driver, a venv with PyTorch and the CUDA wheels.
missing=()
PY=""
for cand in "${SPECREG_PYTHON:-}" /opt/torch/.venv/bin/python3 python3; do
  [ -n "$cand" ] || continue
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then
    PY="$cand"
    break
  fi
done
SP=""
if [ -z "$PY" ]; then
  missing+=("no Python with PyTorch found (set SPECREG_PYTHON to the venv's python3)")
else
  SP="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  [ -d "$SP/nvidia" ] || missing+=("no CUDA wheels in $SP/nvidia (pip install nvidia-cublas nvidia-cusolver nvidia-cuda-nvrtc)")
fi
LIBCUDA="${SPECREG_LIBCUDA:-$(find /usr/local/nvidia /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib \
  /lib/x86_64-linux-gnu -maxdepth 4 -name 'libcuda.so.1' 2>/dev/null | head -1)}"
[ -n "$LIBCUDA" ] || missing+=("no NVIDIA driver: libcuda.so.1 is not under /usr/local/nvidia or the system library folders")
if [ ${#missing[@]} -gt 0 ]; then
  say
  say "**Not run: this machine cannot run the CUDA check.**"
  for m in "${missing[@]}"; do say "- $m"; done
  echo "run.sh: not run (see $SUMMARY)" >&2
  exit 2
fi
LIBDIRS="$(find "$SP/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)"
export LD_LIBRARY_PATH="$LIBDIRS:$(dirname "$LIBCUDA")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SPECREG_REQUIRE_CUDA=1 SPECREG_REQUIRE_NVRTC=1
export SPECREG_DATA="${SPECREG_DATA:-$B/data/mnist}"

# The executables travel gzip-compressed (the bundle must fit 64 MiB): unpack them into
# OUT/exe, with gzip where there is one and the venv's Python otherwise.
E="$OUT/exe"
unpack() {
  local from="$1" to="$2" f dst
  mkdir -p "$to" || return 1
  for f in "$from"/*.gz; do
    [ -e "$f" ] || continue
    dst="$to/$(basename "$f" .gz)"
    if command -v gzip >/dev/null 2>&1; then
      gzip -dc "$f" >"$dst" || return 1
    else
      "$PY" -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$f" "$dst" || return 1
    fi
    chmod +x "$dst" || return 1
  done
}
for sub in bin tests benches; do
  if ! unpack "$B/$sub" "$E/$sub"; then
    say
    say "**Not run: could not unpack the executables of $B/$sub into $E/$sub.**"
    exit 2
  fi
done
export XDG_CACHE_HOME="$OUT/cache"
{
  echo "- python: $PY (torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null))"
  echo "- GPU: $(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1 || echo unknown)"
  echo "- libcuda: $LIBCUDA"
  echo "- LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---|"
} >>"$SUMMARY"

STEPS=()
# step NAME BUDGET_SECONDS COMMAND...: runs with the smaller of its budget and the time left,
# logs to OUT/NAME.log, records the status.
step() {
  local name="$1" budget="$2"
  shift 2
  local left=$((DEADLINE - $(date +%s)))
  [ "$budget" -lt "$left" ] || budget="$left"
  if [ "$budget" -le 5 ]; then
    STEPS+=("| $name | skipped (no time left) | 0 |")
    FAILED=1
    return
  fi
  local t0=$(date +%s) rc
  timeout --kill-after=10 "$budget" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  local dt=$(($(date +%s) - t0)) status="ok"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    status="TIMEOUT after ${budget}s"
    FAILED=1
  elif [ $rc -ne 0 ]; then
    status="FAILED (exit $rc)"
    FAILED=1
  fi
  STEPS+=("| $name | $status | $dt |")
  echo "run.sh: $name: $status (${dt}s)" >&2
}

# 1. Every CUDA test (and each CPU twin), strict: a missing device or libnvrtc fails.
for t in "$E"/tests/*; do
  step "test-$(basename "$t")" 90 "$t" --test-threads=4
done
# 2. The GPU benches (short measurements): GEMM and eigh (cuda_ops), one training step of
# each network and regulariser (train_step), PGD-40 on 1000 images (pgd). Every timed
# region ends with a device synchronisation or a host read. Criterion's estimates go to
# OUT/criterion, whose medians the summary lists.
export SPECREG_BENCH_DEVICE=cuda CRITERION_HOME="$OUT/criterion"
for b in "$E"/benches/*; do
  step "bench-$(basename "$b")" 120 "$b" --bench --warm-up-time 1 --measurement-time 2
done
# 3. The PyTorch anchor on the same GPU.
step pytorch-anchor 90 "$PY" "$B/pytorch_step_times.py" --device cuda --steps 5
# 4. One calibrated training step per network and regulariser on CUDA.
step calibrate 60 "$E/bin/specreg" list --profile paper --configs "$B/configs" --device cuda --out "$OUT/results-paper"
# 5. Experiment 1, trained and evaluated on CUDA.
step exp1-quick 240 "$E/bin/specreg" run --profile quick --only exp1 --configs "$B/configs" \
  --device cuda --data "$SPECREG_DATA" --out "$OUT/exp1-quick" --quiet

{
  for s in "${STEPS[@]}"; do echo "$s"; done
  echo
  echo "Total: $(($(date +%s) - START)) s."
  echo
  echo "## Tests"
  echo '```'
  for f in "$OUT"/test-*.log; do
    [ -e "$f" ] || continue
    echo "$(basename "$f" .log): $(grep -h -E '^test result:' "$f" | tr '\n' ' ')"
    grep -h -E '^test .* FAILED$' "$f"
  done
  echo '```'
  echo "## GPU benches (criterion: time per op, throughput)"
  echo '```'
  grep -h -B1 -E '^\s+(time|thrpt):' "$OUT"/bench-*.log 2>/dev/null | grep -v '^--$'
  grep -h 'skipped' "$OUT"/bench-*.log 2>/dev/null
  echo '```'
  echo "## GPU bench medians (ms)"
  echo '```'
  "$PY" - "$OUT/criterion" <<'PYEOF' 2>&1
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    median = json.loads(est.read_text())["median"]["point_estimate"] / 1e6
    print(f"{bench['full_id']}: {median:.3f}")
PYEOF
  echo '```'
  echo "## PyTorch anchor on CUDA (one JSON line per case)"
  echo '```'
  cat "$OUT/pytorch-anchor.log" 2>/dev/null
  echo '```'
  echo "## Calibrated step times on CUDA (seconds)"
  echo '```'
  cat "$OUT/cache/specreg/calibration.json" 2>/dev/null || tail -n 20 "$OUT/calibrate.log"
  echo '```'
  echo "## Experiment 1 (quick profile) on CUDA"
  echo '```'
  tail -n 30 "$OUT/exp1-quick.log" 2>/dev/null
  ls "$OUT/exp1-quick" 2>/dev/null
  echo '```'
  echo "## Failures"
  if [ $FAILED -eq 0 ]; then
    echo "none"
  else
    for s in "${STEPS[@]}"; do
      case "$s" in *"| ok |"*) ;; *) echo "- $s" ;; esac
    done
    echo
    echo "Failing tests and panics (see the step logs in $OUT):"
    echo '```'
    grep -h -A12 -E '^---- .* stdout ----' "$OUT"/test-*.log 2>/dev/null | head -n 200
    tail -n 20 "$OUT"/bench-*.log "$OUT/pytorch-anchor.log" "$OUT/calibrate.log" "$OUT/exp1-quick.log" 2>/dev/null \
      | grep -i -E 'error|panic|fail' | head -n 40
    echo '```'
  fi
} >>"$SUMMARY"
echo "run.sh: summary in $SUMMARY" >&2
exit $FAILED
