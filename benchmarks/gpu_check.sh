#!/usr/bin/env bash
# The GPU check: on a CUDA machine, the CUDA tests (none may skip) and the probe benchmark on
# the GPU, then one summary. Usage, from anywhere in the repository:
#
#   benchmarks/gpu_check.sh [OUT_DIR]
#
# OUT_DIR (default: $OUT if set, else gpu_check_out/ in the repository) receives gpu.txt (the GPU and versions),
# test_cuda.log and test_cuda.xml (pytest), bench_probe.log and bench_probe.json (the benchmark)
# and summary.txt. The Python is $PYTHON if set, else the first of .venv/bin/python, python3 and
# python whose torch sees CUDA. Exit status: 0 when every test passed and the benchmark ran,
# 1 when something failed, 2 when there is no CUDA to check. Each step has a time limit (180 s
# for the tests, 300 s for the benchmark), so the whole check stays under 10 minutes.
set -euo pipefail

OUT_DIR="${1:-${OUT:-}}"
case "$OUT_DIR" in
    "") ;;
    /*) ;;
    *) OUT_DIR="$PWD/$OUT_DIR" ;;  # relative to where the script was called from
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT_DIR="${OUT_DIR:-$PWD/gpu_check_out}"
TEST_TIMEOUT="${GPU_CHECK_TEST_TIMEOUT:-180}"
BENCH_TIMEOUT="${GPU_CHECK_BENCH_TIMEOUT:-300}"

# ---------------------------------------------------------------------------- a Python with CUDA
PY=""
tried=()
for candidate in ${PYTHON:-} .venv/bin/python python3 python; do
    if ! command -v "$candidate" >/dev/null 2>&1; then
        continue
    fi
    status="$("$candidate" -c 'import torch; print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")' 2>&1 | tail -n 1 || true)"
    tried+=("  $candidate: $status")
    if "$candidate" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
        PY="$candidate"
        break
    fi
done
if [ -z "$PY" ]; then
    {
        echo "gpu_check: CUDA is not available on this machine, so there is nothing to check."
        echo "Python interpreters tried:"
        printf '%s\n' "${tried[@]:-  (none found)}"
        echo "Run this script on a machine with an NVIDIA GPU and a CUDA build of torch"
        echo "(e.g. make install TORCH_INDEX=https://download.pytorch.org/whl/cu126), or set PYTHON."
    } >&2
    exit 2
fi
if ! "$PY" -c 'import isokit, pytest, numpy' >/dev/null 2>&1; then
    echo "gpu_check: $PY has torch with CUDA but cannot import isokit, pytest and numpy;" >&2
    echo "install them with: $PY -m pip install -e '.[test]'" >&2
    exit 1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT_DIR"
run_for() {  # run_for SECONDS COMMAND...: with a time limit where coreutils' timeout exists
    if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi
}

# ---------------------------------------------------------------------------- the machine
{
    echo "python: $PY"
    "$PY" -c '
import platform, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i}: {p.name}, sm {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB")
print(f"host: {platform.processor() or platform.machine()}, python {platform.python_version()}")
'
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true
    fi
} 2>&1 | tee "$OUT_DIR/gpu.txt"

# ---------------------------------------------------------------------------- the CUDA tests
echo
echo "== tests/probe/test_cuda.py"
test_rc=0
run_for "$TEST_TIMEOUT" "$PY" -m pytest -q -rs -p no:cacheprovider tests/probe/test_cuda.py \
    --junitxml="$OUT_DIR/test_cuda.xml" 2>&1 | tee "$OUT_DIR/test_cuda.log" || test_rc=$?

# ---------------------------------------------------------------------------- the benchmark
echo
echo "== benchmarks/bench_probe.py --device cuda --quick"
bench_rc=0
run_for "$BENCH_TIMEOUT" "$PY" benchmarks/bench_probe.py --device cuda --quick \
    --json "$OUT_DIR/bench_probe.json" 2>&1 | tee "$OUT_DIR/bench_probe.log" || bench_rc=$?

# ---------------------------------------------------------------------------- one summary
echo
"$PY" - "$OUT_DIR" "$test_rc" "$bench_rc" <<'PYEOF' | tee "$OUT_DIR/summary.txt"
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, test_rc, bench_rc = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ok = True
print("== gpu_check summary")
gpu = [line for line in (out / "gpu.txt").read_text().splitlines() if line.startswith("cuda:")]
print("GPU:", gpu[0].split(": ", 1)[1] if gpu else "unknown")
try:
    suite = ET.parse(out / "test_cuda.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    print(
        f"tests: {passed} passed, {n['failures']} failed, {n['errors']} errors, "
        f"{n['skipped']} skipped (pytest exit {test_rc})"
    )
    if n["skipped"]:
        print("  FAIL: no CUDA test may skip on a GPU machine (see test_cuda.log)")
    ok &= test_rc == 0 and n["skipped"] == 0 and n["tests"] > 0
except (OSError, ET.ParseError, AttributeError) as err:
    print(f"tests: no result ({err}; pytest exit {test_rc})")
    ok = False
try:
    bench = json.loads((out / "bench_probe.json").read_text())
    print(f"benchmark (--quick, {bench['device']}, {bench.get('gpu')}), exit {bench_rc}:")
    for row in bench["abc"]:
        print(
            f"  depth {row['depth']:>3}: isokit {row['isokit_s']:.3f} s; jacrev/isokit "
            f"{row['ratio_jacrev']:.2f}x, jacfwd/isokit {row['ratio_jacfwd']:.2f}x, "
            f"isokit/floor {row['isokit_over_floor']:.2f}x, isokit-b/floor "
            f"{row['isokit_batched_over_floor']:.2f}x; max |s - s_jacfwd| "
            f"{row['max_abs_diff_vs_jacfwd']:.1e}"
        )
    for row in bench["memory"]:
        ratio = row["isokit"] / row["jacfwd"] if row["jacfwd"] else float("nan")
        print(
            f"  peak memory, depth {row['depth']}: isokit {row['isokit'] / 2**20:.1f} MiB, "
            f"jacfwd {row['jacfwd'] / 2**20:.1f} MiB (isokit/jacfwd {ratio:.2f}x)"
        )
    slq = bench.get("slq")
    if slq:
        worst = max(abs(t["z"]) for t in slq["taps"])
        print(
            f"  SLQ at n_in {slq['n_in']}: exact {slq['exact_s']:.2f} s, SLQ at every tap "
            f"{slq['slq_s']:.2f} s (exact/SLQ {slq['exact_s'] / slq['slq_s']:.2f}x); "
            f"largest |m1 error| {worst:.2f} standard errors"
        )
    ok &= bench_rc == 0
except (OSError, ValueError, KeyError, ZeroDivisionError) as err:
    print(f"benchmark: no result ({err}; exit {bench_rc})")
    ok = False
print("result:", "PASS" if ok else "FAIL", f"(files in {out})")
sys.exit(0 if ok else 1)
PYEOF
