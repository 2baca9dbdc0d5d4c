# A check_apply hook that returns nonzero refuses the apply from inside
# stop_machine, with the hook named and its value reported, and nothing
# changes.
load_core
EXPECT_RC=5 EXPECT_ERR='hook_failed: check_apply hook ksplice_refuse.* returned -16' expect_fail \
    ksplice-apply --core "$KSPLICE_KO" "$UPDATES/n-check-hook-refuses.ko"
expect_applied
! grep -q refused /proc/loadavg || fail "the refused update changed /proc/loadavg"
! lsmod | grep -q ksplice_test_n || fail "the refused update was left loaded"
