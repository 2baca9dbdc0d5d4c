# A fix that changes only a constant table (task_state_array's "S
# (sleeping)") replaces the function reading it, which then reads the new
# copy in update.ko; undo brings the old text back.
load_core
grep -q 'State:	S (sleeping)$' /proc/1/status || fail "init is not shown sleeping before the update"
apply_update q-const-table
grep -q 'State:	S (sleeping, ksplice)$' /proc/1/status || fail "the new table is not used: $(grep State /proc/1/status)"
undo_update test-q
grep -q 'State:	S (sleeping)$' /proc/1/status || fail "undo did not restore the old table"
