# Everything else that writes kernel text leaves an applied trampoline's
# window alone, shown by --verify after each: toggling the jump label of a
# tracepoint inside the patched function (__set_oom_adj, in its old and new
# code), the function tracer on it, kprobes elsewhere in it, and loading and
# unloading a module (whose alternatives, static calls and jump labels the
# loader patches). Sites that would overlap a window are refused when the
# update is created or applied (host tests of runpre::trampoline_window).
load_core
apply_update k-tracepoint-key
T=/sys/kernel/tracing
E=$T/events/oom/oom_score_adj_update
verify() { ksplice-view --verify >/dev/null || fail "verify failed after $1"; }
# gcc may have cloned it (__set_oom_adj.isra.0): the vmlinux copy's name.
fn=$(awk '$3 ~ /^__set_oom_adj(\.|$)/ && NF == 3 { print $3; exit }' /proc/kallsyms)
[ -n "$fn" ] || fail "no __set_oom_adj in kallsyms"
for i in 1 2 3; do
    echo 1 >$E/enable
    echo 0 >/proc/self/oom_adj
    echo 0 >$E/enable
done
verify "toggling the tracepoint's jump label"
echo "$fn" >$T/set_ftrace_filter
echo function >$T/current_tracer
echo 0 >/proc/self/oom_adj
echo nop >$T/current_tracer
echo >$T/set_ftrace_filter
verify "the function tracer"
# The first instruction boundary past the window that kprobes accepts.
off=24
while ! (echo "p:ks_late $fn+$off" >$T/kprobe_events) 2>/dev/null; do
    off=$((off + 1))
    [ $off -lt 64 ] || fail "no kprobe-able offset in $fn+24..64"
done
echo 1 >$T/events/kprobes/ks_late/enable
echo 0 >/proc/self/oom_adj
echo 0 >$T/events/kprobes/ks_late/enable
echo >$T/kprobe_events
verify "a kprobe past the window"
insmod /work/modules/ksplice_nmi.ko
rmmod ksplice_nmi
verify "a module load and unload"
dmesg | grep -q 'oom_adj is deprecated (ksplice)' || fail "the new code did not run"
undo_update test-k
