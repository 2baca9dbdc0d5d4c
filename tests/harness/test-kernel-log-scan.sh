#!/usr/bin/env bash
# The VM harness fails a run on Oops, BUG, WARNING or Call Trace in the
# kernel log, and only in the kernel log: this checks its scanner on
# sample logs, so the VM tests' safety net is itself tested.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/scripts/lib.sh"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0
check() { # WANT(flag|pass) LINE
    printf '%s\n===KSPLICE-DMESG-BEGIN===\n%s\n===KSPLICE-DMESG-END===\n' "script says BUG WARNING" "$2" >"$log"
    local got=pass
    [ -z "$(kernel_log_problems "$log")" ] || got=flag
    if [ "$got" != "$1" ]; then
        echo "FAIL: '$2' gave $got, want $1"
        failed=1
    fi
}
check flag 'Oops: general protection fault, probably for non-canonical address'
check flag 'BUG: kernel NULL pointer dereference, address: 0000000000000000'
check flag 'kernel BUG at mm/slub.c:123!'
check flag 'WARNING: CPU: 0 PID: 1 at kernel/foo.c:12 foo+0x1/0x2'
check flag 'Call Trace:'
check pass 'ksplice: DEBUG candidate matched'
check pass 'ksplice: core loaded, ABI version 2'
check pass 'CONFIG_DEBUG_BUGVERBOSE is set'
[ "$failed" -eq 0 ] && echo "kernel log scan: 8 passed, 0 failed"
exit "$failed"
