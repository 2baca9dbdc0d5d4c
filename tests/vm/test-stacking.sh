# A second update replaces a function the first already replaced; undo
# must go in reverse order.
load_core
apply_update d-string-literal
grep -q ' ksplice$' /proc/loadavg || fail "first update not active"
apply_update h-stack-on-d
grep -q ' ksplice2$' /proc/loadavg || fail "second update not active: $(cat /proc/loadavg)"
expect_applied test-d test-h
EXPECT_RC=5 EXPECT_ERR='out_of_order' expect_fail ksplice-undo test-d
grep -q ' ksplice2$' /proc/loadavg || fail "refused undo changed something"
undo_update test-h
grep -q ' ksplice$' /proc/loadavg || fail "first update not back: $(cat /proc/loadavg)"
undo_update test-d
! grep -q ksplice /proc/loadavg || fail "original not back"
expect_applied
