#!/usr/bin/env bash
# Prints the interpreter the project's virtualenv is made with: the Lambda runtime's Python (3.13)
# wherever this machine has it, on PATH or installed by pyenv without being on PATH; otherwise the
# newest python3 of at least 3.11, with a note on stderr (tests then run on another version than
# Lambda's: behaviour that changed in 3.12/3.13, such as json's recursion or ssl's
# VERIFY_X509_STRICT, is not what they see).
set -euo pipefail

want="3.13"
is_version() { "$1" -c "import sys; sys.exit(0 if sys.version_info[:2] == tuple(map(int, '$2'.split('.'))) else 1)" 2>/dev/null; }

candidates=()
if command -v "python$want" >/dev/null 2>&1; then candidates+=("$(command -v "python$want")"); fi
for root in "${PYENV_ROOT:-}" "$HOME/.pyenv" /root/.pyenv /opt/pyenv /usr/local/pyenv; do
    [[ -n "$root" && -d "$root/versions" ]] || continue
    # Newest patch release first.
    while IFS= read -r dir; do
        candidates+=("$dir/bin/python$want")
    done < <(ls -d "$root/versions/$want".* 2>/dev/null | sort -t. -k3,3nr)
done
for python in /usr/local/bin/python$want /usr/bin/python$want; do candidates+=("$python"); done

for python in "${candidates[@]}"; do
    if [[ -x "$python" ]] && is_version "$python" "$want"; then
        echo "$python"
        exit 0
    fi
done

for python in python3.12 python3.11 python3; do
    if command -v "$python" >/dev/null 2>&1 && "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
        found="$(command -v "$python")"
        echo "note: no Python $want (the Lambda runtime's) on this machine, on PATH or under pyenv; using $("$found" -V 2>&1) at $found" >&2
        echo "$found"
        exit 0
    fi
done
echo "no Python $want and no python3 >= 3.11 found: install Python $want (pyenv install $want)" >&2
exit 1
