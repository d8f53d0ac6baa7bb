#!/usr/bin/env bash
# One GPU check of braincode, one JSON file: Triton tests compiled on the GPU, attention vs SDPA (fp32, bf16),
# ridge vs himalaya torch_cuda, feature-extraction throughput, BrainDiVE at 512 px (sections: bench/gpu.py).
#
#   bench/gpu.sh --prepare            on a machine with a package registry: fill .whl/ (Python 3.12 wheels of
#                                     what the GPU machine lacks, at most 64 MiB; git-ignored)
#   bench/gpu.sh [--out FILE]         on the GPU machine (no registry): install the missing wheels from .whl/
#                                     (no index), then run every section; under 8 minutes on one H100
#   bench/gpu.sh --smoke [--out FILE] anywhere: the same sections at tiny sizes on the CPU, Triton interpreted
#
# With the device tool: prepare here, then run(command="bench/gpu.sh --out $OUT/gpu.json", carry=[".whl"]).
# PYTHON picks the interpreter (default python3). Without a CUDA device the smoke version runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ "${1:-}" == "--prepare" ]]; then
  exec "$PY" bench/gpu_wheels.py prepare
fi
smoke=0
for arg in "$@"; do [[ "$arg" == "--smoke" ]] && smoke=1; done
if [[ $smoke == 0 && -f .whl/manifest.json ]]; then
  "$PY" bench/gpu_wheels.py install || echo "warning: wheels from .whl/ not installed; sections that need them will say so" >&2
fi
export PYTHONPATH="$PWD/.whl/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BRAINCODE_PROGRESS=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout 470 "$PY" bench/gpu.py "$@"
