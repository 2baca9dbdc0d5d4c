# vm-run: --disk ksplice-state.img --boots 2 --add $KDIR/fs/ext2/ext2.ko
# Stored updates come back after a real reboot of the same kernel. The
# state directory is an ext2 file system on /dev/vdb, a raw disk the
# harness keeps between two boots of this script. Boot 1 formats it,
# installs the package and applies two stacked updates with --persist;
# boot 2 installs the package again (the initramfs is new), runs what
# ksplice.service runs, and finds both applied, in order.
[ -b /dev/vdb ] || fail "needs a persistent disk as /dev/vdb (scripts/vm-run --disk FILE)"
grep -q ext2 /proc/filesystems || insmod /work/ext2.ko || fail "needs ext2.ko (--add \$KDIR/fs/ext2/ext2.ko)"
store=/var/lib/ksplice
mkdir -p "$store"
install_package
if ! mount -t ext2 /dev/vdb "$store" 2>/dev/null; then
    echo "boot 1: storing the updates"
    mke2fs -q /dev/vdb || fail "mke2fs /dev/vdb"
    mount -t ext2 /dev/vdb "$store" || fail "mount /dev/vdb"
    unload_core
    ksplice-apply --persist "$UPDATES/signed-d.ko" || fail "apply --persist signed-d"
    ksplice-apply --persist "$UPDATES/signed-h.ko" || fail "apply --persist signed-h"
    echo 1 >"$store/test-boot"
    umount "$store"
    # Undone (not --persist) only so that the harness can unload ksplice.ko
    # after the test; the reboot would drop them anyway.
    ksplice-undo test-sh || fail "undo test-sh"
    ksplice-undo test-sd || fail "undo test-sd"
    exit 0
fi
[ "$(cat "$store/test-boot")" = 1 ] || fail "the disk is not from boot 1 of this test"
echo "boot 2: applying the stored updates"
! grep -q ksplice /proc/loadavg || fail "a fresh boot is already patched"
out=$($(boot_command)) || fail "boot re-apply failed: $out"
echo "$out"
grep -q ' ksplice2$' /proc/loadavg || fail "updates not back after the reboot: $(cat /proc/loadavg)"
expect_applied test-sd test-sh
ksplice-view | grep -q 'automatic re-apply at boot: enabled' || fail "guard tripped by a clean reboot"
ksplice-undo --persist test-sh || fail "undo --persist test-sh"
ksplice-undo --persist test-sd || fail "undo --persist test-sd"
rm "$store/test-boot"
umount "$store"
