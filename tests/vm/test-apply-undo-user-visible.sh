# A change visible from userspace (getppid's result, /proc/loadavg) applies,
# takes effect, is undone, and the old behaviour returns; while applied,
# neither update.ko nor ksplice.ko can be unloaded; after undo update.ko
# stays loaded (reversed) until ksplice-undo --unload, and can be applied
# again meanwhile.
load_core
before=$(getppid_now)
[ "$before" -lt 1000000 ] || fail "getppid already patched: $before"
apply_update a-global-function
# $(...) forks, so the parent pid itself differs from call to call.
after=$(getppid_now)
[ "$after" -ge 1000000 ] || fail "getppid gave $after after apply, want 1000000 more"
expect_applied test-a
ksplice-view test-a | grep -q 'replaces __do_sys_getppid (vmlinux)' || fail "ksplice-view does not name the replaced function"
ksplice-view --json | grep -q '"__do_sys_getppid": "vmlinux"' || fail "ksplice-view --json does not name the replaced function and its object"
# Neither the update nor the core can be unloaded while the update is applied.
! rmmod ksplice_test_a 2>/dev/null || fail "rmmod of an applied update.ko succeeded"
! rmmod ksplice 2>/dev/null || fail "rmmod of ksplice.ko succeeded with an update applied"
[ "$(getppid_now)" -ge 1000000 ] || fail "a refused rmmod changed something"
undo_update test-a
[ "$(getppid_now)" -lt 1000000 ] || fail "getppid not restored: $(getppid_now)"
expect_applied
[ "$(updates_in_state reversed)" = test-a ] || fail "test-a is not listed as reversed"
lsmod | grep -q ksplice_test_a || fail "update module unloaded by a plain undo"
! rmmod ksplice 2>/dev/null || fail "rmmod of ksplice.ko succeeded while it holds a reversed update"
# A reversed update applies again from its resident module.
apply_update a-global-function
[ "$(getppid_now)" -ge 1000000 ] || fail "getppid not patched by the second apply"
expect_applied test-a
ksplice-undo --unload test-a >/dev/null 2>/tmp/unload.err || fail "undo --unload failed: $(cat /tmp/unload.err)"
grep -q 'cannot prove' /tmp/unload.err || fail "--unload did not say what it cannot prove"
[ "$(getppid_now)" -lt 1000000 ] || fail "getppid not restored after undo --unload"
! lsmod | grep -q ksplice_test_a || fail "update module still loaded after --unload"
[ -z "$(updates_in_state reversed)" ] || fail "a released update is still listed"

! grep -q ksplice /proc/loadavg || fail "/proc/loadavg already patched"
apply_update d-string-literal
grep -q ' ksplice$' /proc/loadavg || fail "/proc/loadavg unchanged: $(cat /proc/loadavg)"
undo_update test-d
! grep -q ksplice /proc/loadavg || fail "/proc/loadavg not restored"
