#!/usr/bin/env bash
# Create the peer libraries' environment for benchmarks/bench_separation_data.py and
# benchmarks/bench_parity.py: Open-Unmix, Demucs and bs-roformer (BS-RoFormer, Mel-Band RoFormer), installed
# beside (not into) the project's environment.
#
#   bash benchmarks/peers.sh [VENV]          # default VENV: .venv-peers at the repository root
#   VENV/bin/python benchmarks/bench_separation_data.py
#   VENV/bin/python benchmarks/bench_parity.py
#
# The venv sees the system site-packages, so it uses the torch (CPU), numpy, soundfile and musicfx that are
# already installed. Both peers are installed with --no-deps: their own requirements would pull another
# torch (CUDA wheels) and torchaudio. What the benchmark imports of them needs nothing more:
#   * demucs.augment imports only torch (demucs/__init__.py imports nothing).
#   * openunmix.data imports torch, tqdm and torchaudio (numpy too, through openunmix.utils). torchaudio does
#     not import against the CPU torch here (docs: DESIGN.md), and Open-Unmix uses it only to read files
#     (torchaudio.info / torchaudio.load), so the benchmarks put a soundfile-backed stand-in under that name
#     when the real one does not import (openunmix.model / transforms import it too, without using it).
#   * bs_roformer 0.3.10 imports einops, beartype and rotary-embedding-torch (all pure Python, installed
#     --no-deps too) and, for its Mel-Band model, librosa.filters (librosa is installed with its own
#     dependencies: numba, scikit-learn, ...; none of them pulls torch).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-peers}"
PYTHON="${PYTHON:-python3}"
# The versions the published results were measured with.
DEMUCS_VERSION="${DEMUCS_VERSION:-4.1.0}"
OPENUNMIX_VERSION="${OPENUNMIX_VERSION:-1.3.0}"
BS_ROFORMER_VERSION="${BS_ROFORMER_VERSION:-0.3.10}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --no-deps "demucs==$DEMUCS_VERSION" "openunmix==$OPENUNMIX_VERSION" \
    "bs-roformer==$BS_ROFORMER_VERSION" "einops==0.8.2" "beartype==0.23.1" "rotary-embedding-torch==0.9.1"
"$VENV/bin/python" -m pip install --quiet "librosa==0.11.0"

# Fail here, not in the middle of a benchmark, when a peer's module cannot be imported.
cd "$REPO"
"$VENV/bin/python" - <<'EOF_PY'
import sys

sys.path.insert(0, "benchmarks")
import bench_separation_data as bench

versions = bench.peer_versions()
missing = [name for name, version in versions.items() if version is None]
if missing:
    sys.exit(f"peers.sh: cannot import {missing} in {sys.prefix}")
import bench_parity

versions.update(bench_parity.import_peers())
print("peers ready:", ", ".join(f"{name} {version}" for name, version in versions.items()), "in", sys.prefix)
EOF_PY
