# The new code shares the running kernel's static variables: pr_info_once's
# "already done" flag set by the patched code stays set after undo, so the
# original code does not warn again.
load_core
apply_update j-static-local
vmtool capget-v1
vmtool capget-v1
[ "$(dmesg | grep -c 'warning (ksplice).*32-bit capabilities')" -eq 1 ] || fail "the new warning was not printed exactly once"
undo_update test-j
vmtool capget-v1
! dmesg | grep -q 'warning: .*32-bit capabilities' || fail "the original code warned again: the flag was not shared"
