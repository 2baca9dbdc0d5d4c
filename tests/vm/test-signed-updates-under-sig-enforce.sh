# vm-run: --append "module.sig_enforce=1"
# With module.sig_enforce=1 only signed modules load. The package's
# ksplice.ko (signed with the kernel's key by make deb) loads and a signed
# update applies; an unsigned update, an update signed with a key the kernel
# does not know and the harness's unsigned ksplice.ko are refused, each with
# the reason in words and exit 5, leaving nothing changed.
need_cmdline module.sig_enforce=1
[ "$(cat /sys/module/module/parameters/sig_enforce)" = Y ] || fail "sig_enforce is off"
install_package
unload_core
EXPECT_RC=5 EXPECT_ERR='not signed, and this kernel loads only signed modules \(module.sig_enforce=1\)' \
    expect_fail ksplice-apply --core "$KSPLICE_KO.harness" "$UPDATES/signed-d.ko"
! core_loaded || fail "an unsigned ksplice.ko loaded"
ksplice-apply "$UPDATES/signed-d.ko" || fail "signed update refused"
grep -q ' ksplice$' /proc/loadavg || fail "signed update not active"
ksplice-undo test-sd || fail "undo test-sd"
EXPECT_RC=5 EXPECT_ERR='d-string-literal.ko: the module is not signed, and this kernel loads only signed modules' \
    expect_fail ksplice-apply "$UPDATES/d-string-literal.ko"
EXPECT_RC=5 EXPECT_ERR='otherkey-d.ko: the module is not signed by a key the kernel trusts' \
    expect_fail ksplice-apply "$UPDATES/otherkey-d.ko"
EXPECT_ERR='hint: sign updates with a key in the kernel.s keyring' \
    expect_fail ksplice-apply "$UPDATES/otherkey-d.ko"
! grep -q ksplice /proc/loadavg || fail "a refused update changed /proc/loadavg"
expect_applied
