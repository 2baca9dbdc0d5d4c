# vm-run: --append "lockdown=integrity"
# Under lockdown=integrity (no sig_enforce) only modules signed by a key the
# kernel trusts load. The package's signed ksplice.ko loads and a signed
# update applies (lockdown does not stop ksplice writing kernel text); an
# unsigned update and one signed with an unknown key are refused with the
# lockdown named, exit 5, nothing changed.
need_cmdline lockdown=integrity
# The level is read from securityfs.
if [ -d /sys/kernel/security ]; then
    grep -q " /sys/kernel/security " /proc/mounts || mount -t securityfs securityfs /sys/kernel/security
    grep -q '\[integrity\]' /sys/kernel/security/lockdown || fail "not locked down: $(cat /sys/kernel/security/lockdown)"
fi
install_package
unload_core
EXPECT_RC=5 EXPECT_ERR='locked down \(lockdown: integrity\).*the module is not signed' \
    expect_fail ksplice-apply --core "$KSPLICE_KO.harness" "$UPDATES/signed-d.ko"
ksplice-apply "$UPDATES/signed-d.ko" || fail "signed update refused"
grep -q ' ksplice$' /proc/loadavg || fail "signed update not active"
ksplice-undo test-sd || fail "undo test-sd"
EXPECT_RC=5 EXPECT_ERR='locked down \(lockdown: integrity\).*the module is not signed' \
    expect_fail ksplice-apply "$UPDATES/d-string-literal.ko"
EXPECT_RC=5 EXPECT_ERR='locked down \(lockdown: integrity\).*signed, but not by such a key' \
    expect_fail ksplice-apply "$UPDATES/otherkey-d.ko"
! grep -q ksplice /proc/loadavg || fail "a refused update changed /proc/loadavg"
expect_applied
