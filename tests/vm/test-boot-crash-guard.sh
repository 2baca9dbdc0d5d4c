# The crash-loop guard of boot-time re-apply. A boot-time apply that never
# finishes (here: killed with SIGKILL while ksplice.ko retries a busy
# update; at a real boot, a crash) leaves its fsynced marker behind. The
# next boot command applies nothing, exits 1 and says why, ksplice-view
# shows it, and it stays off until --after-crash. The busy update is put
# into the store by hand: it can never be applied, so --persist cannot store it.
install_package
unload_core
store=/var/lib/ksplice
rm -rf "$store"
ksplice-apply --persist "$UPDATES/signed-d.ko" || fail "apply --persist signed-d"
dir=$(dirname "$(ls "$store/kernels/$(uname -r)"/*/0001-test-sd.ko)")
cp "$UPDATES/busy-kthreadd.ko" "$dir/0002-test-busy.ko"
ksplice-undo test-sd || fail "undo test-sd"

ksplice-apply --boot --tries 30 --retry-ms 100 >/tmp/boot.out 2>&1 &
pid=$!
for _ in $(seq 100); do
    grep -q '^update=test-busy$' "$store/boot-in-progress" 2>/dev/null && break
    sleep 0.1
done
grep -q '^update=test-busy$' "$store/boot-in-progress" || fail "no marker for test-busy: $(cat /tmp/boot.out)"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
[ -e "$store/boot-in-progress" ] || fail "the killed apply removed its marker"
grep -q ' ksplice$' /proc/loadavg || fail "test-sd was not applied before the busy one"
ksplice-undo test-sd || fail "undo test-sd"
rmmod ksplice_test_busy 2>/dev/null || true

EXPECT_RC=1 EXPECT_ERR='automatic re-apply skipped: .*test-busy.*did not finish.*--after-crash' \
    expect_fail ksplice-apply --boot
! grep -q ksplice /proc/loadavg || fail "a disabled boot re-apply applied something"
EXPECT_RC=1 EXPECT_ERR='automatic re-apply skipped' expect_fail ksplice-apply --boot
view=$(ksplice-view)
echo "$view"
echo "$view" | grep -q 'automatic re-apply at boot: DISABLED: .*test-busy' || fail "view does not show the guard"
ksplice-view --json | grep -q '"enabled": false' || fail "JSON does not show the guard"

# The admin drops the bad update and re-enables re-apply.
ksplice-undo --persist test-busy || fail "undo --persist of the stored, unapplied test-busy"
ksplice-apply --boot --after-crash || fail "boot --after-crash"
grep -q ' ksplice$' /proc/loadavg || fail "test-sd not applied after --after-crash"
ksplice-view | grep -q 'automatic re-apply at boot: enabled' || fail "guard still on"
ksplice-undo --persist test-sd || fail "undo --persist test-sd"
rm -rf "$store"
