#!/usr/bin/env bash
# Every GPU check of the project in one run on a lent GPU machine (the repository on PYTHONPATH, no install):
# the CUDA tests (fused Triton kernels compiled for the GPU, CUDA graphs, equality with cuDNN and with the CPU
# path), then benchmarks/cuda_check.py (equivalence at a language-model size, the training-step ratio against
# cuDNN at hidden 256 and 1024, a population of 32 against 32 solo trainings, a training on the GPU), then
# benchmarks/oneshot_gpu.sh (ENAS, DARTS and RS-WS on PTB at the search protocol: seconds per step).
#     OUT=/some/dir bash benchmarks/gpu_checks.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
OUT="${OUT:-.}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
timeout "${TEST_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider --maxfail=8 -k cuda \
    tests/compile/test_fused.py tests/nn/test_layers.py tests/compile/test_compile.py tests/nn/test_decoding.py 2>&1 | tee "$OUT/pytest_cuda.txt" | tail -40
timeout "${BENCH_TIMEOUT:-330}" python3 benchmarks/cuda_check.py --out "$OUT" 2>&1 | tail -120
# the short version of the one-shot plan (docs/gpu.md): seconds per supernet step on PTB, extrapolated
OUT="$OUT" STEPS="${ONESHOT_STEPS:-100}" bash benchmarks/oneshot_gpu.sh 2>&1 | tail -20
