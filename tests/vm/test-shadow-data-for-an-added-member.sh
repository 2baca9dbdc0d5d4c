# A fix that would add a member to task_struct keeps it as shadow data
# (tests/patches/o-shadow-member: a per-task count of status reads): it
# works on a task that existed before the apply and on one created after,
# and undo (with its post_undo hook freeing the data) removes it.
load_core
sleep 1000 &
before=$!
status_reads() { sed -n 's/^StatusReads:\t//p' /proc/$1/status; }
[ -z "$(status_reads $before)" ] || fail "StatusReads before the apply"
apply_update o-shadow-member
[ "$(status_reads $before)" = 1 ] || fail "first read of an old task: '$(status_reads $before)'"
[ "$(status_reads $before)" = 2 ] || fail "second read of an old task: '$(status_reads $before)'"
sleep 1000 &
after=$!
[ "$(status_reads $after)" = 1 ] || fail "first read of a new task: '$(status_reads $after)'"
[ "$(status_reads $before)" = 3 ] || fail "the old task's count was lost: '$(status_reads $before)'"
undo_update test-o
[ -z "$(status_reads $before)" ] || fail "StatusReads after undo"
kill $before $after
