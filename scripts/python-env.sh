# shellcheck shell=bash
# Sourced by scripts/run, scripts/test, scripts/lock and bench/run: find a Python >= 3.12,
# bootstrap the pinned uv, and make .venv exactly as uv.lock says.
#
# Looks at $PYTHON, then python3.13/python3.12/python3 on PATH, then pyenv's and the
# system's installations. mitmproxy 12 needs 3.12 or newer; many machines default to 3.11.

_python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3; do
        [ -n "$candidate" ] || continue
        candidate=$(command -v "$candidate" 2>/dev/null) || continue
        if _python_ok "$candidate"; then echo "$candidate"; return 0; fi
    done
    local root="${PYENV_ROOT:-$HOME/.pyenv}"
    for candidate in "$root"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] \
        /usr/bin/python3.1[2-9]; do
        [ -x "$candidate" ] || continue
        if _python_ok "$candidate"; then echo "$candidate"; return 0; fi
    done
    return 1
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# uv never downloads a Python of its own here: it uses the one find_python chose.
export UV_PYTHON_DOWNLOADS=never

# ensure_uv: $UV is the uv that scripts/uv-requirements.txt pins (hash-checked), kept in
# .tools/uv so that it is the same version on every machine.
ensure_uv() {
    local python tools="$REPO/.tools/uv" pins="$REPO/scripts/uv-requirements.txt"
    export UV="$tools/bin/uv"
    if [ -x "$UV" ] && [ "$tools/.installed" -nt "$pins" ]; then return 0; fi
    python=$(find_python) || { _no_python; return 1; }
    rm -rf "$tools"
    "$python" -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
        --require-hashes --only-binary :all: -r "$pins" >&2
    touch "$tools/.installed"
}

_no_python() {
    echo "auditproxy needs Python 3.12 or newer; none found." >&2
    echo "Install one (e.g. apt-get install python3.12, or pyenv install 3.12) or" >&2
    echo "point PYTHON at it: PYTHON=/path/to/python3.12 $0" >&2
}

# kerberos_extra: print "--extra kerberos" where the kerberos extra can be installed. Its
# gssapi has no Linux wheel on PyPI: it compiles, which needs a C compiler and the MIT
# Kerberos headers (krb5-config). Without them .venv is made without it (Negotiate proxy
# authentication is then unavailable, and its tests skip), and this says so once; under
# CI=true (.ci/run installs gcc and libkrb5-dev) their absence is an error.
kerberos_extra() {
    local venv=$1 note="$1/.kerberos-extra-skipped"
    if command -v krb5-config >/dev/null 2>&1 && command -v "${CC:-cc}" >/dev/null 2>&1; then
        rm -f "$note"
        echo "--extra kerberos"
        return 0
    fi
    case "${CI:-}" in
    1 | true | TRUE | True | yes)
        echo "CI: the kerberos extra needs a C compiler and krb5-config:" \
            "apt-get install gcc libkrb5-dev" >&2
        return 1
        ;;
    esac
    if [ ! -e "$note" ]; then
        echo "Note: installing without the kerberos extra (Negotiate proxy authentication):" \
            "it compiles gssapi, which needs gcc and krb5-config (Debian: apt-get install" \
            "gcc libkrb5-dev; RHEL: dnf install gcc krb5-devel). Everything else works." >&2
        mkdir -p "$venv" && touch "$note"
    fi
}

# ensure_venv: .venv with exactly the versions in uv.lock (every extra that can be installed
# here, and the dev group: the test and lint tools), auditproxy itself installed editable.
# Quick when nothing changed; fails when pyproject.toml changed and uv.lock was not
# refreshed (scripts/lock).
ensure_venv() {
    local python venv="$REPO/.venv" kerberos
    ensure_uv || return 1
    python=$(find_python) || { _no_python; return 1; }
    if [ -x "$venv/bin/python" ] && ! _python_ok "$venv/bin/python"; then rm -rf "$venv"; fi
    kerberos=$(kerberos_extra "$venv") || return 1
    # shellcheck disable=SC2086 # $kerberos is empty or two words
    UV_PROJECT_ENVIRONMENT="$venv" "$UV" sync --quiet --locked --extra redis \
        --extra directory $kerberos --group dev \
        --python "$python" --project "$REPO" >&2 || {
        echo "Installing from uv.lock failed. If pyproject.toml changed, refresh the lock:" >&2
        echo "  scripts/lock" >&2
        return 1
    }
    export VENV="$venv"
}
