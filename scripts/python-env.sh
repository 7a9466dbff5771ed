# Sourced by scripts/run and scripts/test: find a Python >= 3.12 and make .venv with it.
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

# ensure_venv EXTRAS: .venv with auditproxy installed (editable) with those extras.
ensure_venv() {
    local extras="$1" repo venv stamp python
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    venv="$repo/.venv"
    if [ ! -x "$venv/bin/python" ] || ! _python_ok "$venv/bin/python"; then
        python=$(find_python) || {
            echo "auditproxy needs Python 3.12 or newer; none found." >&2
            echo "Install one (e.g. apt-get install python3.12, or pyenv install 3.12) or" >&2
            echo "point PYTHON at it: PYTHON=/path/to/python3.12 $0" >&2
            return 1
        }
        echo "Creating .venv with $python ($("$python" --version 2>&1))" >&2
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    # Reinstall when pyproject.toml changed since the last install.
    stamp="$venv/.installed-$extras"
    if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$repo[$extras]" >&2
        touch "$stamp"
    fi
    VENV="$venv"
}
