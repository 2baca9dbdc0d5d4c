# Callers without CAP_SYS_MODULE are refused, even when the node's mode
# would let them open it.
load_core
[ "$(vmtool open-errno /dev/ksplice)" = ok ] || fail "root cannot use /dev/ksplice"
# Mode 0600 stops nobody at the VFS.
[ "$(as_nobody vmtool open-errno /dev/ksplice)" = EACCES ] || fail "nobody was not refused by mode 0600"
# With the mode opened up, the module itself says EPERM.
chmod 666 /dev/ksplice
got=$(as_nobody vmtool open-errno /dev/ksplice)
chmod 600 /dev/ksplice
[ "$got" = EPERM ] || fail "nobody got '$got' from the module, want EPERM"
# Root without CAP_SYS_MODULE is refused too.
got=$(without_cap_sys_module vmtool open-errno /dev/ksplice)
[ "$got" = EPERM ] || fail "root without CAP_SYS_MODULE got '$got', want EPERM"
EXPECT_RC=4 EXPECT_ERR='permission denied' expect_fail as_nobody ksplice-view
