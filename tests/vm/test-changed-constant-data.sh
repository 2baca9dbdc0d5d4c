# A fix that changes only a constant table (task_state_array's "S
# (sleeping)") replaces the function reading it, which then reads the new
# copy in update.ko; undo brings the old text back. The state shown is a
# sleeper's of our own (init may be running when read).
load_core
sleep 600 &
sleeper=$!
trap 'kill $sleeper 2>/dev/null || true' EXIT
state() { i=0; while ! grep -q '^State:	S' /proc/$sleeper/status && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done; grep '^State:' /proc/$sleeper/status; }
[ "$(state)" = "State:	S (sleeping)" ] || fail "the sleeper is not shown sleeping before the update: $(state)"
apply_update q-const-table
[ "$(state)" = "State:	S (sleeping, ksplice)" ] || fail "the new table is not used: $(state)"
undo_update test-q
[ "$(state)" = "State:	S (sleeping)" ] || fail "undo did not restore the old table: $(state)"
