# An update whose fix changes a variable's initial value (overflowuid,
# /proc/sys/kernel/overflowuid) carries apply and undo hooks that set and
# restore the live value: the new value is live while applied, the old one
# after undo.
load_core
[ "$(cat /proc/sys/kernel/overflowuid)" = 65534 ] || fail "overflowuid is not 65534 to begin with"
apply_update m-data-with-hooks
[ "$(cat /proc/sys/kernel/overflowuid)" = 65533 ] || fail "the apply hook did not set overflowuid: $(cat /proc/sys/kernel/overflowuid)"
undo_update test-m
[ "$(cat /proc/sys/kernel/overflowuid)" = 65534 ] || fail "the undo hook did not restore overflowuid: $(cat /proc/sys/kernel/overflowuid)"
