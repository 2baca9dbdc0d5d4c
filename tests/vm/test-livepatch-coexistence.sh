# ksplice and upstream livepatch on one function (cmdline_proc_show, which
# the kernel's livepatch-sample.ko redirects through ftrace with IPMODIFY):
# - livepatch first: ksplice-apply refuses with ftrace_conflict, naming the
#   livepatch module, and changes nothing;
# - ksplice first: when livepatch takes the function, ksplice-view reports
#   the update as shadowed by it and --verify fails, naming it; once the
#   livepatch is gone the update runs again and verifies.
load_core
LP=/sys/kernel/livepatch/livepatch_sample
lp_off() {
    echo 0 >$LP/enabled
    i=0
    while [ -e $LP ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    [ ! -e $LP ] || fail "livepatch_sample did not finish disabling"
    rmmod livepatch_sample || fail "rmmod livepatch_sample failed"
}
insmod /work/modules/livepatch-sample.ko || fail "insmod livepatch-sample.ko failed"
grep -q 'this has been live patched' /proc/cmdline || fail "livepatch-sample is not active"
EXPECT_RC=5 EXPECT_ERR='ftrace_conflict.*cmdline_proc_show.*livepatch module livepatch_sample' \
    expect_fail ksplice-apply --core "$KSPLICE_KO" "$UPDATES/l-cmdline.ko"
expect_applied
grep -q 'this has been live patched' /proc/cmdline || fail "the refused apply changed /proc/cmdline"
lp_off
grep -q ' ksplice$' /proc/cmdline && fail "ksplice output without ksplice"

apply_update l-cmdline
grep -q ' ksplice$' /proc/cmdline || fail "the update is not active: $(cat /proc/cmdline)"
ksplice-view --verify >/dev/null || fail "verify failed on an intact update"
insmod /work/modules/livepatch-sample.ko || fail "insmod livepatch-sample.ko failed"
grep -q 'this has been live patched' /proc/cmdline || fail "livepatch did not take over"
ksplice-view | grep -q '^test-l .*shadowed' || fail "ksplice-view does not show the update as shadowed: $(ksplice-view)"
ksplice-view | grep -q 'cmdline_proc_show (vmlinux), shadowed by livepatch module livepatch_sample' \
    || fail "ksplice-view does not name who shadows it: $(ksplice-view)"
ksplice-view --json | grep -q '"cmdline_proc_show": "livepatch module livepatch_sample"' || fail "JSON lacks the livepatch in shadowed_functions"
EXPECT_RC=5 EXPECT_ERR='ftrace_conflict.*cmdline_proc_show is shadowed by livepatch module livepatch_sample' \
    expect_fail ksplice-view --verify
lp_off
grep -q ' ksplice$' /proc/cmdline || fail "the update did not come back after the livepatch left"
ksplice-view --verify >/dev/null || fail "verify failed after the livepatch left"
undo_update test-l
! grep -q ' ksplice$' /proc/cmdline || fail "not restored"
