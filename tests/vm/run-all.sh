# Runs every tests/vm/test-*.sh in this one boot (or those named in
# $VM_TESTS), each in its own shell, and prints a summary line.
. /lib/ksplice/testlib.sh
passed=0 failed=0 skipped=0 failures=""
for t in /work/vm/test-*.sh; do
    name=$(basename "$t" .sh)
    if [ -n "${VM_TESTS:-}" ] && ! echo " $VM_TESTS " | grep -q " $name "; then
        continue
    fi
    # A test that needs its own boot (kernel arguments, a disk) says so on a
    # "# vm-run: OPTIONS" line; it runs only when named in $VM_TESTS.
    needs=$(sed -n 's/^# vm-run: //p' "$t")
    if [ -n "$needs" ] && [ -z "${VM_TESTS:-}" ]; then
        echo "--- SKIP $name (needs its own boot: vm-run $needs)"
        skipped=$((skipped + 1))
        continue
    fi
    echo "=== $name"
    if sh -eu -c ". /lib/ksplice/testlib.sh; . $t"; then
        echo "--- PASS $name"
        passed=$((passed + 1))
    else
        echo "--- FAIL $name"
        failed=$((failed + 1))
        failures="$failures $name"
    fi
    unload_core 2>/dev/null || true
done
echo "vm tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || { echo "failed:$failures"; exit 1; }
