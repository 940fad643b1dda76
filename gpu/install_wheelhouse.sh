#!/usr/bin/env bash
# On the GPU device (no internet), first thing of a call that carries [".whl"]: install the wheelhouse that
# gpu/wheelhouse.sh made (.whl/gpu/*.whl, .whl/*.whl) into a folder of its own, without touching the image's
# site-packages, and import what it installed.
#
# usage: bash gpu/install_wheelhouse.sh [TARGET]      prints the `export PYTHONPATH=...` to use
#        source gpu/install_wheelhouse.sh [TARGET]    exports it in the calling shell
# TARGET defaults to /tmp/site; PYTHON (default python3) is the Python that runs the tests.

_install_wheelhouse() {
    local target=${1:-/tmp/site} python=${PYTHON:-python3} root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || return
    local nullglob wheels
    nullglob=$(shopt -p nullglob)  # set back as it was: a sourced script shares the caller's shell
    shopt -s nullglob
    wheels=("$root"/.whl/gpu/*.whl "$root"/.whl/*.whl)
    eval "$nullglob"
    if (( ${#wheels[@]} == 0 )); then
        echo "install_wheelhouse: no wheels under $root/.whl: run 'bash gpu/wheelhouse.sh' on a machine with PyPI" \
             "and give the device call carry [\".whl\"]" >&2
        return 2
    fi
    # --upgrade: a second call on a warm machine replaces the first one's files instead of warning about them
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-index --no-deps --upgrade \
        --target "$target" "${wheels[@]}" || return
    # zarr and numcodecs carry compiled code built against another numpy than the image's: import them now, so a
    # mismatch shows here and not as a collection error of the tests (lpips is pure Python and imports torch: skip)
    PYTHONPATH="$target:$root" "$python" -c 'import numcodecs, numpy, zarr, zarr.codecs
print(f"install_wheelhouse: zarr {zarr.__version__}, numcodecs {numcodecs.__version__}, numpy {numpy.__version__}")' \
        || return
    GANINV_WHEELHOUSE_PYTHONPATH="$target:$root"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then  # run: print the export
    _install_wheelhouse "$@" || exit
    echo "export PYTHONPATH=$GANINV_WHEELHOUSE_PYTHONPATH"
else  # sourced: export it here
    _install_wheelhouse "$@" && export PYTHONPATH=$GANINV_WHEELHOUSE_PYTHONPATH
fi
