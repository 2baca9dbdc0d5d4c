# comm_show calls get_proc_task, a static function kallsyms lists twice;
# run-pre matching resolves the right copy from the live call site.
load_core
[ "$(grep -c ' get_proc_task$' /proc/kallsyms)" -ge 2 ] || fail "get_proc_task is not ambiguous on this kernel"
[ "$(cat /proc/self/comm)" = cat ] || fail "unexpected comm"
apply_update i-ambiguous-callee
[ "$(cat /proc/self/comm)" = "cat [ksplice]" ] || fail "comm after apply: $(cat /proc/self/comm)"
undo_update test-i
[ "$(cat /proc/self/comm)" = cat ] || fail "comm not restored"
