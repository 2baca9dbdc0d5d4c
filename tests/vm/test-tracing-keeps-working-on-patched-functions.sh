# Plain tracing keeps working on a patched function, and the new code keeps
# running under it: the function tracer, function_graph, a kprobe on the
# function's entry (on ftrace), and a BPF fentry program, attached after the
# apply and, for BPF, also before it (its trampoline calls the body, which
# starts with ksplice's jmp). No ftrace_bug, and --verify holds throughout.
load_core
T=/sys/kernel/tracing
new() { grep -q ' ksplice$' /proc/loadavg; }
apply_update d-string-literal
for tracer in function function_graph; do
    echo loadavg_proc_show >$T/set_ftrace_filter
    echo >$T/trace
    echo $tracer >$T/current_tracer
    cat /proc/loadavg >/dev/null
    new || fail "new behaviour lost under $tracer"
    grep -q 'loadavg_proc_show' $T/trace || fail "$tracer did not see loadavg_proc_show"
    ksplice-view --verify >/dev/null || fail "verify failed under $tracer"
    echo nop >$T/current_tracer
done
echo >$T/set_ftrace_filter
echo 'p:ks_entry loadavg_proc_show' >$T/kprobe_events
echo 1 >$T/events/kprobes/ks_entry/enable
cat /proc/loadavg >/dev/null
new || fail "new behaviour lost under the kprobe"
grep -q ks_entry $T/trace || fail "the kprobe did not fire"
echo 0 >$T/events/kprobes/ks_entry/enable
echo >$T/kprobe_events

bpf_count() { # run N reads of /proc/loadavg under a BPF fentry program
    rm -f /tmp/bpf.ready /tmp/bpf.stop
    vmtool bpf-fentry loadavg_proc_show /tmp/bpf.ready /tmp/bpf.stop >/tmp/bpf.count &
    i=0
    while [ ! -e /tmp/bpf.ready ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e /tmp/bpf.ready ] || fail "the BPF program did not attach"
    "$@"
    touch /tmp/bpf.stop
    wait
}
reads() { for i in 1 2 3 4 5; do cat /proc/loadavg >/dev/null; done; new || fail "new behaviour lost under BPF"; }
bpf_count reads
[ "$(cat /tmp/bpf.count)" -ge 5 ] || fail "BPF fentry counted $(cat /tmp/bpf.count) calls, want 5"
undo_update test-d
# Attached first: the apply is not refused (a BPF trampoline runs the body).
apply_under_bpf() { apply_update d-string-literal; reads; }
bpf_count apply_under_bpf
[ "$(cat /tmp/bpf.count)" -ge 5 ] || fail "BPF fentry attached before the apply counted $(cat /tmp/bpf.count)"
ksplice-view --verify >/dev/null || fail "verify failed after BPF"
! dmesg | grep -qi 'ftrace.*bug\|ftrace failed' || fail "ftrace reported a bug"
undo_update test-d
! grep -q ksplice /proc/loadavg || fail "not restored"
