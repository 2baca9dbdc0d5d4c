# The installed package keeps updates across a reboot. Installed from the
# .deb (not the harness's copies), ksplice-apply --persist applies two
# stacked signed updates and stores them; a reboot is stood in for by
# undoing both and unloading ksplice.ko, so the kernel holds no ksplice
# state; the command ksplice.service runs then loads the installed
# ksplice.ko and applies both again, in order (the second one only matches
# on top of the first). Running it again changes nothing. ksplice-view and
# ksplice-uname show states, metadata and the effective release; updates
# stored for another build of the kernel stay stored, are listed as not
# applicable and are not applied; ksplice-undo --persist empties the set.
install_package
unload_core
store=/var/lib/ksplice
rm -rf "$store"
! grep -q ksplice /proc/loadavg || fail "/proc/loadavg already patched"
[ "$(ksplice-uname -r)" = "$(uname -r)" ] || fail "effective release with no update: $(ksplice-uname -r)"

ksplice-apply --persist "$UPDATES/signed-d.ko" || fail "apply --persist signed-d"
ksplice-apply --persist "$UPDATES/signed-h.ko" || fail "apply --persist signed-h"
grep -q ' ksplice2$' /proc/loadavg || fail "updates not active: $(cat /proc/loadavg)"
build_id=$(ksplice-view --json | sed -n 's/^  "kernel_build_id": "\([0-9a-f]*\)",$/\1/p')
[ -n "$build_id" ] || fail "no build id for the running kernel"
mine="$store/kernels/$(uname -r)/$build_id"
[ "$(ls "$mine" | tr '\n' ' ')" = "0001-test-sd.ko 0002-test-sh.ko " ] || fail "stored set: $(ls -R "$store/kernels")"
[ "$(ksplice-uname -r)" = "$(uname -r)-ks2" ] || fail "ksplice-uname -r: $(ksplice-uname -r)"
ksplice-uname -a | grep -q " $(uname -r)-ks2 " || fail "ksplice-uname -a: $(ksplice-uname -a)"
view=$(ksplice-view)
echo "$view"
echo "$view" | grep -q "effective release $(uname -r)-ks2" || fail "view lacks the effective release"
echo "$view" | grep -q 'fixes CVE-2026-10002, CVE-2026-10003' || fail "view lacks the CVEs"
echo "$view" | grep -q 'replaces loadavg_proc_show (vmlinux), shadowed by test-sh' || fail "view lacks the shadowing"
echo "$view" | grep -q '1 test-sd .*, signed: applied' || fail "view lacks the stored test-sd"
json=$(ksplice-view --json)
echo "$json" | grep -q '"schema_version": 1' || fail "JSON lacks schema_version"
echo "$json" | grep -q '"shadowed": true' || fail "JSON does not show test-sd shadowed"
echo "$json" | grep -q '"description": "/proc/loadavg ends in ksplice2"' || fail "JSON lacks the description"
expect_applied test-sd test-sh

# A reboot, as far as the kernel knows: no updates, no ksplice.ko.
ksplice-undo --unload test-sh || fail "undo test-sh"
ksplice-undo --unload test-sd || fail "undo test-sd"
rmmod ksplice || fail "rmmod ksplice"
! grep -q ksplice /proc/loadavg || fail "/proc/loadavg still patched"
# An update stored while another build of this release ran (a copy of
# signed-d whose payload names another vmlinux build id).
other=$(vmtool store-for-other-build "$UPDATES/signed-d.ko" "$store") || fail "vmtool store-for-other-build"

boot=$(boot_command)
[ "$boot" = "/usr/sbin/ksplice-apply --boot" ] || fail "ksplice.service runs '$boot'"
out=$($boot) || fail "boot re-apply failed: $out"
echo "$out"
echo "$out" | tr '\n' ' ' | grep -q 'applied stored update test-sd applied stored update test-sh' \
    || fail "not applied in order: $out"
grep -q ' ksplice2$' /proc/loadavg || fail "updates not back after boot: $(cat /proc/loadavg)"
expect_applied test-sd test-sh
[ "$(ksplice-uname -r)" = "$(uname -r)-ks2" ] || fail "metadata not recorded at boot"
out=$($boot) || fail "second boot re-apply failed: $out"
echo "$out" | grep -q 'stored update test-sh is already applied' || fail "second run: $out"
ksplice-view | grep -q "test-sd .*$(uname -r) [0-9a-f]*, signed: not applicable to the running kernel" \
    || fail "the other build's update is not listed as not applicable"
# Its signature no longer matches the changed file: the kernel refuses it
# even without sig_enforce, and ksplice-apply says why.
EXPECT_RC=5 EXPECT_ERR='signature does not verify: it was changed after signing' \
    expect_fail ksplice-apply "$other"

# ksplice-undo --persist: undone and out of the set, the other kernel's stays.
ksplice-undo --persist test-sh || fail "undo --persist test-sh"
ksplice-undo --persist test-sd || fail "undo --persist test-sd"
expect_applied
[ -z "$(ls "$mine")" ] || fail "set not empty: $(ls -R "$store/kernels")"
[ -e "$other" ] || fail "another build's update was removed"
out=$($boot) || fail "boot with an empty set failed"
echo "$out" | grep -q 'no stored updates for kernel' || fail "empty set: $out"
EXPECT_RC=2 EXPECT_ERR='neither applied nor stored' expect_fail ksplice-undo --persist test-sd
rm -rf "$store"
