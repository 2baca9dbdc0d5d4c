# A function of a loaded module (ksplice_target, built in-tree like any
# distro module) is matched in that module's kallsyms, patched and undone;
# the functions are listed with their module, and the module is not pinned.
load_core
unload_target
load_target
[ "$(target_answer)" = unpatched ] || fail "the target is already patched: $(target_answer)"
klog_mark
apply_update mod-target
[ "$(target_answer)" = patched ] || fail "apply did not take effect: $(target_answer)"
ksplice-view test-mod | grep -q 'replaces ksplice_target_answer (ksplice_target)$' \
    || fail "view does not name the module: $(ksplice-view test-mod)"
ksplice-view --json | grep -q '"ksplice_target_answer": "ksplice_target"' || fail "JSON lacks the object"
ksplice-view --verify >/dev/null || fail "verify failed on a patched module"
expect_applied test-mod
undo_update test-mod
[ "$(target_answer)" = unpatched ] || fail "undo did not restore: $(target_answer)"
unload_target
expect_klog <<'KLOG'
ksplice: apply update from ksplice_test_mod: 2 functions, pause N ns
ksplice: undo test-mod: 2 functions, pause N ns
KLOG
