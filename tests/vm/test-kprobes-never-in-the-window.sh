# kprobes and trampolines never share bytes. loadavg_proc_show's window is
# +9..+18: the jmp at +9..+14 and the tail of the mov it cuts, +14..+18.
# - A probe registered (disabled, as every new kprobe_events entry is)
#   inside the window refuses the apply with probe_conflict; so does an
#   enabled, optimised one.
# - After the apply, a probe on the jmp is harmless (kprobes emulates it)
#   and one in the middle of the jmp is refused by the kernel; undo refuses
#   while a probe sits on the jmp or in the tail (+14), enabled or not, and
#   succeeds with the original bytes once they are gone.
load_core
T=/sys/kernel/tracing
probe() { echo "p:ks_$1 loadavg_proc_show+$2" >>$T/kprobe_events; }
unprobe() { echo "-:ks_$1" >>$T/kprobe_events; }
enable() { echo "$2" >$T/events/kprobes/ks_$1/enable; }
old_loadavg() { ! grep -q ksplice /proc/loadavg; }
new_loadavg() { grep -q ' ksplice$' /proc/loadavg; }

probe jmp 9
EXPECT_RC=5 EXPECT_ERR='probe_conflict.*loadavg_proc_show\+0x9' \
    expect_fail ksplice-apply --core "$KSPLICE_KO" "$UPDATES/d-string-literal.ko"
expect_applied
enable jmp 1
cat /proc/loadavg >/dev/null && cat /proc/loadavg >/dev/null
old_loadavg || fail "the refused apply changed /proc/loadavg"
# Once optimised (a jmp over +9..), it is refused all the same.
i=0
while ! grep -q 'loadavg_proc_show+0x9.*OPTIMIZED' /sys/kernel/debug/kprobes/list && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
grep -q 'loadavg_proc_show+0x9.*OPTIMIZED' /sys/kernel/debug/kprobes/list || fail "the kprobe was never optimised"
EXPECT_RC=5 EXPECT_ERR='probe_conflict' \
    expect_fail ksplice-apply --core "$KSPLICE_KO" "$UPDATES/d-string-literal.ko"
enable jmp 0
unprobe jmp

apply_update d-string-literal
new_loadavg || fail "not applied"
# The middle of the jmp is not an instruction boundary: the kernel refuses.
! probe mid 11 2>/dev/null || fail "a kprobe inside the jmp was accepted"
probe jmp 9
probe tail 14
enable jmp 1
enable tail 1
cat /proc/loadavg >/dev/null
new_loadavg || fail "the new code does not run with a probe on the jmp"
grep -q ks_jmp $T/trace || fail "the probe on the jmp did not fire"
EXPECT_RC=5 EXPECT_ERR='probe_conflict' expect_fail ksplice-undo test-d
enable jmp 0
enable tail 0
EXPECT_RC=5 EXPECT_ERR='probe_conflict' expect_fail ksplice-undo test-d
unprobe jmp
EXPECT_RC=5 EXPECT_ERR='probe_conflict.*loadavg_proc_show\+0xe' expect_fail ksplice-undo test-d
unprobe tail
new_loadavg || fail "a refused undo changed something"
ksplice-view --verify >/dev/null || fail "verify failed after the probes left"
undo_update test-d
old_loadavg || fail "not restored"
cat /proc/loadavg >/dev/null
