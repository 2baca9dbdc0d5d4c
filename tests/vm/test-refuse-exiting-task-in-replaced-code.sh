# A thread that has left the task list in do_exit (exit_notify reaped it)
# but still runs, here parked by ksplice_exit_park.ko, is seen by the stack
# check through RCU Tasks' exit lists: an update of do_exit is refused as
# code_busy naming it, and applies once the thread has gone.
load_core
insmod /work/modules/ksplice_exit_park.ko || fail "insmod ksplice_exit_park.ko failed"
vmtool exit-thread ksplice-exiter &
pid=$!
i=0
while [ "$(cat /sys/module/ksplice_exit_park/parameters/parked)" -lt 1 ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ "$(cat /sys/module/ksplice_exit_park/parameters/parked)" -eq 1 ] || fail "the thread was not parked"
[ "$(ls /proc/$pid/task | wc -l)" -eq 1 ] || fail "the parked thread is still on the task list"
EXPECT_RC=5 EXPECT_ERR='code_busy.*ksplice-exiter.*do_exit' expect_fail \
    ksplice-apply --core "$KSPLICE_KO" --tries 2 --retry-ms 50 "$UPDATES/do-exit.ko"
expect_applied
echo 1 >/sys/module/ksplice_exit_park/parameters/release
sleep 0.5
apply_update do-exit
undo_update test-do
kill $pid
rmmod ksplice_exit_park
