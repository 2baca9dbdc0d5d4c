# After an apply, the function tracer and a kprobe on the patched function
# still work, with no ftrace_bug or WARN, and the new behaviour stays.
load_core
apply_update d-string-literal
T=/sys/kernel/tracing
[ -d $T ] || fail "no tracefs"
echo loadavg_proc_show > $T/set_ftrace_filter
echo function > $T/current_tracer
cat /proc/loadavg
grep -q ' ksplice$' /proc/loadavg || fail "new behaviour lost under the tracer"
grep -q 'loadavg_proc_show' $T/trace || fail "the tracer did not see loadavg_proc_show"
echo nop > $T/current_tracer
echo > $T/set_ftrace_filter
[ -e $T/kprobe_events ] || fail "no kprobe_events (CONFIG_KPROBE_EVENTS) in the test kernel"
{
    echo 'p:ksplice_probe loadavg_proc_show' > $T/kprobe_events
    echo 1 > $T/events/kprobes/ksplice_probe/enable
    cat /proc/loadavg
    grep -q ' ksplice$' /proc/loadavg || fail "new behaviour lost under the kprobe"
    grep -q 'ksplice_probe' $T/trace || fail "the kprobe did not fire"
    echo 0 > $T/events/kprobes/ksplice_probe/enable
    echo > $T/kprobe_events
}
! dmesg | grep -qi 'ftrace.*bug\|ftrace failed' || fail "ftrace reported a bug"
undo_update test-d
! grep -q ksplice /proc/loadavg || fail "not restored"
