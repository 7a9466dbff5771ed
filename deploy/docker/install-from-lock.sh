#!/bin/sh
# Install auditproxy exactly as uv.lock says into a new virtual environment:
#
#   deploy/docker/install-from-lock.sh SOURCE_DIR PREFIX
#
# The image's build stage runs it (deploy/docker/Dockerfile), and so does
# tests/test_deploy.py, for real, so that what CI tested is what the image runs. SOURCE_DIR
# holds pyproject.toml, uv.lock, scripts/uv-requirements.txt, addons/ and the example
# policy. PYTHON names the interpreter (default: python3, which must be 3.12 or newer).
# Runtime dependencies and the redis extra only: no test tools in the image; and the
# kerberos extra (single sign-on) where it can be built: gssapi compiles, with a C compiler
# and krb5-config (the image's build stage installs gcc and libkrb5-dev; KERBEROS=no
# leaves it out, KERBEROS=yes makes its absence an error).
set -eu
src=$(cd "$1" && pwd)
prefix=$2
python=${PYTHON:-python3}

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$python" -m venv "$tools"
"$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes --only-binary :all: -r "$src/scripts/uv-requirements.txt"
extras="--extra redis"
kerberos=${KERBEROS:-auto}
if [ "$kerberos" != no ] && command -v krb5-config >/dev/null 2>&1 \
    && command -v "${CC:-cc}" >/dev/null 2>&1; then
    extras="$extras --extra kerberos"
elif [ "$kerberos" = yes ]; then
    echo "install-from-lock.sh: KERBEROS=yes needs a C compiler and krb5-config" >&2
    exit 1
fi
# shellcheck disable=SC2086 # $extras is words
UV_PROJECT_ENVIRONMENT=$prefix UV_PYTHON_DOWNLOADS=never "$tools/bin/uv" sync --quiet \
    --locked --no-dev $extras --no-editable --reinstall-package auditproxy --compile-bytecode \
    --project "$src" --python "$python"

# Smoke test: every module the proxy loads imports (a dependency missing from the lock
# fails here, not at the first start), and the shipped policy passes its own check.
"$prefix/bin/python" -c 'import auditproxy.addon, auditproxy.notice.store_redis'
case "$extras" in *kerberos*) "$prefix/bin/python" -c 'import auditproxy.decide.negotiate' ;; esac
"$prefix/bin/auditproxy" check "$src/policy/department.yaml"
