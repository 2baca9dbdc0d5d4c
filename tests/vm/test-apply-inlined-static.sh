# A change in a static function gcc inlined (task_context_switch_counts
# into proc_pid_status) takes effect through its replaced caller.
load_core
sleep 1000 &
pid=$!
sleep 0.2
count() { sed -n 's/^voluntary_ctxt_switches:[[:space:]]*//p' /proc/$pid/status; }
before=$(count)
apply_update b-inlined-static
after=$(count)
[ "$after" -eq $((before + 1)) ] || fail "voluntary_ctxt_switches $after after apply, want $((before + 1))"
undo_update test-b
[ "$(count)" -eq "$before" ] || fail "not restored: $(count)"
kill $pid
