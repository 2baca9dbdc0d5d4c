# Runs every test-*.sh of $VM_DIR (default /work/vm) in this one boot (or
# those named in $VM_TESTS), each in its own shell with -e, -u and pipefail, and prints a
# summary line. A test also fails when the kernel log lines it caused show
# Oops, BUG, WARNING or Call Trace, or when its ksplice: lines differ from
# its expected transcript, $VM_DIR/klog/NAME.klog (normalised as
# klog_transcript does); with KLOG_BLESS=1 the transcripts are printed
# instead, for scripts/vm-test --bless.
. /lib/ksplice/testlib.sh
passed=0 failed=0 skipped=0 failures=""
for t in "${VM_DIR:-/work/vm}"/test-*.sh; do
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
    klog_mark
    ok=1
    sh -eu -o pipefail -c ". /lib/ksplice/testlib.sh; . $t" || ok=0
    cleanup_updates
    unload_core 2>/dev/null || true
    bad=$(klog_since_mark | grep -E 'Oops|(^|[^A-Za-z_])BUG([^A-Za-z_]|$)|WARNING|Call Trace' || true)
    if [ -n "$bad" ]; then
        echo "kernel log during $name:"
        printf '%s\n' "$bad" | head -20
        ok=0
    fi
    golden="${VM_DIR:-/work/vm}/klog/$name.klog"
    if [ "${KLOG_BLESS:-0}" = 1 ]; then
        echo "--- klog $name"
        klog_transcript
        echo "--- end klog"
    elif [ -r "$golden" ] && ! klog_transcript | diff -u "$golden" - >/tmp/klog.diff; then
        echo "ksplice: kernel log lines of $name differ from klog/$name.klog:"
        head -40 /tmp/klog.diff
        ok=0
    fi
    if [ "$ok" -eq 1 ]; then
        echo "--- PASS $name"
        passed=$((passed + 1))
    else
        echo "--- FAIL $name"
        failed=$((failed + 1))
        failures="$failures $name"
    fi
done
echo "vm tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] || { echo "failed:$failures"; exit 1; }
