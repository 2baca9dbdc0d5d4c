# An update for a module that is not loaded is recorded: its functions are
# pending, and are patched when the module loads, before its init runs;
# until then the update changes nothing. Undo of a pending update just
# forgets it.
load_core
unload_target
klog_mark
out=$(ksplice-apply --core "$KSPLICE_KO" "$UPDATES/mod-target.ko") || fail "apply failed"
echo "$out" | grep -q '2 function(s) of module ksplice_target pending: patched when it loads' \
    || fail "ksplice-apply does not say what is pending: $out"
expect_applied test-mod
ksplice-view test-mod | grep -q 'replaces ksplice_target_answer (ksplice_target), pending: patched when ksplice_target loads' \
    || fail "view does not show the pending function: $(ksplice-view test-mod)"
json=$(ksplice-view --json) || fail "ksplice-view --json failed"
echo "$json" | grep -q '"pending": \[' || fail "JSON lacks pending: $json"
load_target
[ "$(target_answer)" = patched ] || fail "the module loaded unpatched: $(target_answer)"
ksplice-view test-mod | grep -q 'pending' && fail "still pending after the load: $(ksplice-view test-mod)"
ksplice-view --verify >/dev/null || fail "verify failed after the load"
undo_update test-mod
[ "$(target_answer)" = unpatched ] || fail "undo did not restore: $(target_answer)"
unload_target
# Pending, then undone without the module ever loading.
apply_update mod-target
undo_update test-mod
load_target
[ "$(target_answer)" = unpatched ] || fail "a reversed update patched the module: $(target_answer)"
unload_target
expect_klog <<'KLOG'
ksplice: apply update from ksplice_test_mod: 0 functions, pause N ns; 2 pending until their module loads
ksplice: module ksplice_target loaded: patched 2 functions of applied updates
ksplice: undo test-mod: 2 functions, pause N ns
ksplice: apply update from ksplice_test_mod: 0 functions, pause N ns; 2 pending until their module loads
ksplice: undo test-mod: 0 functions, pause N ns
KLOG
