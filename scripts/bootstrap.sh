#!/usr/bin/env bash
# Idempotent set-up for a fresh machine (Python 3.11 + pip, no GPU, no cloud account):
# a project venv with every extra, bubblewrap for the sandbox, azurite for the Azure path.
# A stamp keyed on pyproject.toml makes re-runs instant.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv" >&2
    "$PY" -m venv .venv
fi

# torch is installed first, as a CPU build: from PyPI, torch==2.13.0 on Linux is the multi-GB CUDA
# build. pip's own configuration is used when it already resolves to a CPU build (a local wheel
# folder or a mirror, see `pip config list`); otherwise the CPU build comes from PyTorch's index.
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# The version pip's configured sources would install for torch==$TORCH_VERSION (a dry run: nothing
# is downloaded but metadata), e.g. "2.13.0+cpu" from a local CPU wheel; empty if none offers it.
configured_torch_build() {
    .venv/bin/python -m pip install --dry-run --ignore-installed --no-deps -q --report - \
        "torch==$TORCH_VERSION" 2>/dev/null \
        | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["install"][0]["metadata"]["version"])' \
            2>/dev/null || true
}

install_cpu_torch() {
    if .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '$TORCH_VERSION')" \
            2>/dev/null; then
        return  # already there (a re-run after pyproject.toml changed)
    fi
    case "$(configured_torch_build)" in
        *+cpu) .venv/bin/python -m pip install -q "torch==$TORCH_VERSION" ;;
        *) echo "bootstrap: torch $TORCH_VERSION (CPU build) from $TORCH_CPU_INDEX" >&2
           .venv/bin/python -m pip install -q --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION" ;;
    esac
}

stamp=.venv/.cleanroom-installed
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "bootstrap: installing cleanroom-console with extras ml, azure, test, summarise" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    install_cpu_torch
    .venv/bin/python -m pip install -q -e ".[ml,azure,test,summarise]"
    echo "$want" > "$stamp"
fi

# bubblewrap: the local runtime's sandbox. Without it the runtime refuses to run workloads.
if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing bubblewrap" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
    else
        echo "bootstrap: warning: bubblewrap (bwrap) is missing; install it (apt-get install bubblewrap) to run sandboxed workloads" >&2
    fi
fi

# azurite: the Azure Storage emulator used by the Azure-path tests (tests/azurite.py starts it).
# Pinned so every machine tests against the same emulator. A failed install does not stop the
# bootstrap: the Azure-path tests then skip and say why.
AZURITE_VERSION=3.35.0
if [ ! -x tools/azurite/node_modules/.bin/azurite-blob ]; then
    if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
        echo "bootstrap: installing azurite $AZURITE_VERSION (npm)" >&2
        mkdir -p tools/azurite
        if ! (cd tools/azurite && npm install --no-audit --no-fund --loglevel=error \
                --prefix . "azurite@$AZURITE_VERSION" >/dev/null); then
            echo "bootstrap: warning: npm could not install azurite; Azure-path tests will skip" >&2
        fi
    else
        echo "bootstrap: warning: node/npm missing; install Node.js >= 18 for the Azure-path tests" >&2
    fi
fi
