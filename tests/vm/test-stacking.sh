# A second update replaces a function the first already replaced; undo
# must go in reverse order, and the first update.ko cannot be unloaded
# while the second, even reversed, still holds code that refers into it.
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
EXPECT_RC=5 EXPECT_ERR='out_of_order.*test-h refers into' expect_fail ksplice-undo --unload test-d
lsmod | grep -q ksplice_test_d || fail "a refused unload unloaded test-d"
ksplice-undo --unload test-h >/dev/null 2>&1 || fail "unload test-h failed"
ksplice-undo --unload test-d >/dev/null 2>&1 || fail "unload test-d failed"
! lsmod | grep -q 'ksplice_test_[dh]' || fail "update modules left loaded"
