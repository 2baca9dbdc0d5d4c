# New code with a static local of its own (the lockdep key of an
# init_rwsem() in alloc_pid) carries that variable in update.ko rather than
# looking it up in the running kernel: the update applies, forks run the new
# code under lockdep with no complaint, and undo brings the old code back.
load_core
before=$(dmesg | wc -l)
apply_update p-new-lockdep-key
i=0
while [ $i -lt 20 ]; do /bin/true; i=$((i + 1)); done
[ "$(sh -c 'echo forked')" = forked ] || fail "fork through the new alloc_pid failed"
undo_update test-p
sh -c true || fail "fork after undo failed"
new=$(dmesg | tail -n +$((before + 1)))
! echo "$new" | grep -qiE 'lockdep|lock_class|possible recursive|non-static key' \
    || fail "lockdep complained about the new key: $new"
