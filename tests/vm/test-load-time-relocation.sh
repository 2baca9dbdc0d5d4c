# New code whose jump label names a tracepoint key that is not exported
# (oom_score_adj_update in __set_oom_adj) gets the key from the module
# loader through a livepatch relocation: the update loads, applies, and the
# tracepoint fires from the new code.
load_core
apply_update k-tracepoint-key
T=/sys/kernel/tracing
E=$T/events/oom/oom_score_adj_update
[ -d $E ] || fail "no oom_score_adj_update trace event in the test kernel"
echo > $T/trace
echo 1 > $E/enable
echo 0 > /proc/self/oom_adj
echo 0 > $E/enable
dmesg | grep -q 'oom_adj is deprecated (ksplice)' || fail "the new code did not run"
grep -q 'oom_score_adj_update' $T/trace || fail "the tracepoint in the new code did not fire"
undo_update test-k
