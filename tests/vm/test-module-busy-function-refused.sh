# A task sleeping inside a module function being replaced (a user task in
# a write, then a kthread the module parks there) makes apply refuse with
# code_busy, naming the task and the function, with nothing changed; once
# it returns, the apply succeeds and the new code runs on the next call.
load_core
unload_target
load_target
wait_holding() {
    for _ in $(seq 100); do
        grep -q "^holding $1 " /proc/ksplice_target_hold && return 0
        sleep 0.1
    done
    fail "holding never became $1: $(cat /proc/ksplice_target_hold)"
}
echo khold >/proc/ksplice_target_hold
wait_holding 1
EXPECT_RC=5 EXPECT_ERR='code_busy.*ksplice-khold.*ksplice_target_hold' \
    expect_fail ksplice-apply --core "$KSPLICE_KO" --tries 2 --retry-ms 100 "$UPDATES/mod-target.ko"
[ "$(target_answer)" = unpatched ] || fail "a refused apply changed something"
echo release >/proc/ksplice_target_hold
wait_holding 0
echo hold >/proc/ksplice_target_hold &
holder=$!
wait_holding 1
EXPECT_RC=5 EXPECT_ERR='code_busy.*ksplice_target_hold' \
    expect_fail ksplice-apply --core "$KSPLICE_KO" --tries 2 --retry-ms 100 "$UPDATES/mod-target.ko"
[ "$(target_answer)" = unpatched ] || fail "a refused apply changed something"
echo release >/proc/ksplice_target_hold
wait "$holder" || fail "the holder failed"
grep -q 'result 0$' /proc/ksplice_target_hold || fail "the old hold did not return 0: $(cat /proc/ksplice_target_hold)"
apply_update mod-target
echo hold >/proc/ksplice_target_hold &
holder=$!
wait_holding 1
echo release >/proc/ksplice_target_hold
wait "$holder" || fail "the second holder failed"
grep -q 'result 1$' /proc/ksplice_target_hold || fail "the new hold did not run: $(cat /proc/ksplice_target_hold)"
undo_update test-mod
unload_target
