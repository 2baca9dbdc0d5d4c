#!/usr/bin/env bash
# Every shell script the harness and the VM run parses: the VM's with
# busybox sh (its /bin/sh), the host's with bash. A syntax error in the VM
# library otherwise fails every VM test at once, late.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bad=0
for f in "$top"/tests/vm/*.sh "$top"/tests/vm/stress/*.sh; do
    [ -e "$f" ] || continue
    busybox sh -n "$f" || { echo "test-scripts-parse: $f does not parse with busybox sh" >&2; bad=1; }
done
for f in "$top"/scripts/* "$top"/tests/harness/*.sh "$top"/tests/package/*.sh; do
    head -n1 "$f" | grep -q 'bash' || continue
    bash -n "$f" || { echo "test-scripts-parse: $f does not parse with bash" >&2; bad=1; }
done
[ "$bad" -eq 0 ] && echo "test-scripts-parse: every script parses"
