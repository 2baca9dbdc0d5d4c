#!/usr/bin/env bash
# The VM harness itself: it reports the script's exit status from the result
# disk, fails a run whose guest brings up fewer CPUs than QEMU was given, and
# fails a run whose kernel crashes before writing a result, or whose kernel
# log shows a WARNING.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
run=$top/scripts/vm-run
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0 passed=0
check() { # NAME WANT-RC WANT-STDERR-REGEX VM-RUN-ARGS...
    local name=$1 want=$2 regex=$3 rc=0
    shift 3
    "$run" "$@" >"$work/out" 2>&1 || rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -Eq -- "$regex" "$work/out"; then
        echo "FAIL: $name: exit $rc (want $want), output:"
        tail -5 "$work/out"
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
}
printf 'echo hello from the guest\nexit 3\n' >"$work/exit3.sh"
check "exit status comes back" 3 'hello from the guest' "$work/exit3.sh"
printf 'cat /sys/devices/system/cpu/online\n' >"$work/cpus.sh"
check "4 vCPUs are online" 0 '^0-3' --smp 4 "$work/cpus.sh"
check "a missing CPU fails the run" 1 'only 1 of 2 CPUs are online' --append maxcpus=1 "$work/cpus.sh"
printf 'echo c >/proc/sysrq-trigger\n' >"$work/crash.sh"
check "a crash fails the run" 1 'without writing its result' "$work/crash.sh"
printf 'echo "WARNING: CPU: 0 PID: 1 at harness-test" >/dev/kmsg\n' >"$work/warn.sh"
check "a kernel warning fails the run" 1 'kernel log shows' "$work/warn.sh"
printf 'sleep 100000 &\necho left a sleeper behind\n' >"$work/orphan.sh"
check "a process the script leaves behind does not hold the run" 0 'left a sleeper behind' --timeout 120 "$work/orphan.sh"
seq 1 20000 | sed 's/^/echo line /' >"$work/long.sh"
echo 'dmesg | tail -1; echo last line of a long run' >>"$work/long.sh"
check "a long output is kept whole" 0 'last line of a long run' --log "$work/long.log" "$work/long.sh"
grep -q '^line 20000$' "$work/long.log" || { echo "FAIL: the result log lost lines"; failed=$((failed + 1)); }
echo "vm-run harness: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
