# The stopper threads that run stop_machine are checked too: an update to
# multi_cpu_stop, which every CPU's stopper is inside during ksplice's own
# stop, is refused as code_busy naming a migration thread (their stacks are
# never seen by the task walk, which skips running tasks), and nothing
# changes.
load_core
EXPECT_RC=5 EXPECT_ERR='code_busy.*migration/[0-9]+.*multi_cpu_stop' expect_fail \
    ksplice-apply --core "$KSPLICE_KO" --tries 2 --retry-ms 50 "$UPDATES/stopper-busy.ko"
expect_applied
! lsmod | grep -q ksplice_test_stopper || fail "refused update left loaded"
