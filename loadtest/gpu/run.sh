#!/usr/bin/env bash
# On the GPU host, from the repository's root: check and join the offline bundle's parts,
# install them with no network, and run the GPU benchmark within 5 minutes in all.
#
#   bash loadtest/gpu/run.sh PARTS_DIR OUT_DIR [python -m loadtest.gpu.bench flags...]
#
# PARTS_DIR holds litestream-gpu-bundle.tar.NNN and SHA256SUMS (python -m loadtest.gpu.bundle
# build). The wheels go to $GPU_RUN_WORK/site (default /tmp/litestream-gpu), ahead of
# the image's own packages (so onnxruntime-gpu shadows a plain onnxruntime there); the CUDA
# and cuDNN libraries come from the image's pip packages (nvidia-*), put on the loader path.
set -euo pipefail
parts=$1 out=$2
shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
started=$(date +%s)
work=${GPU_RUN_WORK:-/tmp/litestream-gpu}
total_s=${GPU_RUN_TOTAL_S:-290}  # seconds for everything, install included
mkdir -p "$work" "$out"
python3 -m loadtest.gpu.bundle join --parts "$parts" --out "$work/bundle.tar"
python3 -m loadtest.gpu.bundle install --bundle "$work/bundle.tar" --target "$work/site"
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
libs=$( (find "$site/nvidia" "$site/torch/lib" -name 'lib*.so*' -printf '%h\n' 2>/dev/null \
        || true) | sort -u | paste -sd: -)
export LD_LIBRARY_PATH=${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONPATH=$work/site:$root
export PYTHONUNBUFFERED=1
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
installed=$(( $(date +%s) - started ))
echo "joined and installed in ${installed} s"
cuda_lib=$work/site/onnxruntime/capi/libonnxruntime_providers_cuda.so
if [ -e "$cuda_lib" ] && command -v ldd >/dev/null; then
    ldd "$cuda_lib" | grep 'not found' && echo "(libraries the CUDA provider cannot find)" || true
fi
# From $work, so that litestream is the bundle's wheel (what was installed), not the tree's.
out=$(cd "$out" && pwd)
cd "$work"
budget=$(( total_s - installed ))
timeout -s TERM $(( budget + 15 )) python3 -m loadtest.gpu.bench --out "$out" \
    --bundle "$work/bundle.tar" --budget-s "$budget" "$@"
