#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment: a pinned stack, its
# mmcv built from source with the compiled ops, and mokd_det installed in
# editable mode. Two stacks (MOKD_STACK):
#   openmmlab (default): the upstream releases, mmcv 2.1.0, mmdet 3.3.0,
#       mmengine 0.10.7, mmpretrain 1.2.0 (requirements/dev.txt), in .venv
#   onedl: the maintained forks on PyPI under the same import names,
#       onedl-mmcv 2.3.6, onedl-mmdetection 3.5.1, onedl-mmengine 0.10.12,
#       onedl-mmpretrain 1.3.6 (requirements/onedl.txt), in .venv-onedl
#
# Idempotent: a stamp in the venv records a hash of every input (this script,
# the requirement files, setup.py); when nothing changed the script exits at
# once. The mmcv wheel is built once per machine and cached in
# $MOKD_CACHE (default ~/.cache/mokd_det), so a rebuilt venv installs it in
# seconds.
#
# Environment:
#   MOKD_STACK  openmmlab (default) or onedl
#   MOKD_VENV   where the venv lives (default: <repo>/.venv, or <repo>/.venv-onedl)
#   MOKD_CACHE  where the built mmcv wheel is cached (default: ~/.cache/mokd_det)
#   PYTHON      interpreter for the venv (default: python3.11, else python3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=${MOKD_STACK:-openmmlab}
CACHE=${MOKD_CACHE:-$HOME/.cache/mokd_det}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

# Each stack's mmcv is published on PyPI as a source distribution only; pip
# fetches it (through this machine's pip configuration: index, proxy, cache)
# and the tarball is checked against PyPI's published sha256.
case $STACK in
    openmmlab)
        VENV=${MOKD_VENV:-$ROOT/.venv}
        MMCV_DIST=mmcv MMCV_VERSION=2.1.0
        MMCV_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f
        # its setup.py imports pkg_resources, removed in setuptools 70+
        MMCV_BUILD_SETUPTOOLS='setuptools<70'
        REQUIREMENTS=requirements/dev.txt ;;
    onedl)
        VENV=${MOKD_VENV:-$ROOT/.venv-onedl}
        MMCV_DIST=onedl-mmcv MMCV_VERSION=2.3.6
        MMCV_SHA256=8704978a3d492b15cc058742ac3165bd1bcc2dd20678da9ed39e0da3048e3045
        # its pyproject.toml states the licence as PEP 639 wants (77+)
        MMCV_BUILD_SETUPTOOLS='setuptools>=77'
        REQUIREMENTS=requirements/onedl.txt ;;
    *)
        echo "[setup] MOKD_STACK=$STACK: expected openmmlab (the default) or onedl" >&2
        exit 2 ;;
esac
# file names use the normalised distribution name (onedl_mmcv-2.3.6.tar.gz)
MMCV_FILE=${MMCV_DIST//-/_}-$MMCV_VERSION

cd "$ROOT"
stamp_value=$( (echo "$STACK"; cat tools/setup_env.sh requirements/*.txt setup.py) | sha256sum | cut -d' ' -f1)
stamp_file=$VENV/.mokd_setup_stamp
if [[ -f $stamp_file && $(cat "$stamp_file") == "$stamp_value" ]]; then
    echo "[setup] $VENV is up to date"
    exit 0
fi

start=$(date +%s)
log() { echo "[setup $(( $(date +%s) - start ))s] $*"; }

if [[ ! -x $VENV/bin/python ]]; then
    log "creating venv $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
# pip, minus the warnings about this machine's extra (file://) index entries
pip() {
    "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2>&1 |
        { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    return "${PIPESTATUS[0]}"
}

log "installing torch and torchvision"
pip install -q -r requirements/torch.txt

torch_tag=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.replace("+", "_"))')
wheel_dir=$CACHE/$MMCV_DIST-$MMCV_VERSION-torch$torch_tag
mmcv_wheel=$(ls "$wheel_dir"/$MMCV_FILE-*.whl 2>/dev/null | head -n 1 || true)
if [[ -z $mmcv_wheel ]]; then
    log "building $MMCV_DIST $MMCV_VERSION with ops against torch $torch_tag (about 13 minutes on 2 cores)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    # the setuptools the stack's mmcv builds with (above), then the pinned
    # one is restored below. (Installed first: pip download runs the sdist's
    # setup.py for its metadata too.)
    pip install -q "$MMCV_BUILD_SETUPTOOLS" wheel ninja
    pip download -q --no-binary :all: --no-deps -d "$build/sdist" \
        "$MMCV_DIST==$MMCV_VERSION"
    mmcv_sdist=$build/sdist/$MMCV_FILE.tar.gz
    if [[ ! -f $mmcv_sdist ]]; then
        echo "[setup] pip download $MMCV_DIST==$MMCV_VERSION saved no $(basename "$mmcv_sdist") in $build/sdist" >&2
        exit 1
    fi
    if ! echo "$MMCV_SHA256  $mmcv_sdist" | sha256sum -c --quiet; then
        echo "[setup] $(basename "$mmcv_sdist") from the package index does not have PyPI's sha256 $MMCV_SHA256; check the index/proxy in your pip configuration (pip config list)" >&2
        exit 1
    fi
    tar xzf "$mmcv_sdist" -C "$build"
    # torch >= 2.14's headers need C++20; mmcv's setup.py hard-codes c++14/17.
    sed -i 's/-std=c++14/-std=c++20/g; s/-std=c++17/-std=c++20/g' \
        "$build/$MMCV_FILE/setup.py"
    mkdir -p "$wheel_dir"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        pip wheel -q --no-build-isolation --no-deps -w "$wheel_dir" "$build/$MMCV_FILE"
    mmcv_wheel=$(ls "$wheel_dir"/$MMCV_FILE-*.whl | head -n 1)
fi
log "installing $(basename "$mmcv_wheel") and the pinned set $REQUIREMENTS"
pip install -q "$mmcv_wheel" -r "$REQUIREMENTS"
pip install -q --no-deps --no-build-isolation -e .

# Fail here, not in the first test, when the ops are missing.
"$VENV/bin/python" - <<'EOF'
import mmcv, mmdet, mmpretrain, torch
from mmcv.ops import nms, RoIAlign  # noqa: F401  compiled ops present
import mokd_det  # noqa: F401
print(f'[setup] torch {torch.__version__}, mmcv {mmcv.__version__} (ops), '
      f'mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}')
EOF
echo "$stamp_value" > "$stamp_file"
log "done"
