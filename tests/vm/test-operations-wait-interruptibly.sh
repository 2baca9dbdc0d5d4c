# An apply that keeps retrying a busy stack check holds no lock other
# commands need and sleeps interruptibly: ksplice-view answers meanwhile,
# the apply is in S state (never D, which the hung-task detector watches),
# and SIGKILL ends it with nothing changed.
load_core
ksplice-apply --core "$KSPLICE_KO" --tries 100 --retry-ms 200 "$UPDATES/busy-kthreadd.ko" >/tmp/apply.out 2>&1 &
pid=$!
i=0
while ! grep -q 'refused to apply\|ksplice_test_busy' /proc/modules 2>/dev/null && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
sleep 1
timeout 5 ksplice-view >/dev/null || fail "ksplice-view blocked while an apply was retrying"
state=$(sed 's/^.*) //' /proc/$pid/stat | cut -d' ' -f1)
[ "$state" = S ] || fail "the retrying apply is in state $state, want S"
kill -9 $pid
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
! kill -0 $pid 2>/dev/null || fail "SIGKILL did not end the apply"
dmesg | grep -q 'refused to apply update from ksplice_test_busy: interrupted' || fail "the kernel did not log the interrupted apply"
expect_applied
rmmod ksplice_test_busy || fail "the update module was not left unloadable"
