# A patched module can be unloaded (the update does not pin it): its
# trampolines go with its code, the update shows them pending, and loading
# the module again patches it again.
load_core
unload_target
load_target
apply_update mod-target
[ "$(target_answer)" = patched ] || fail "apply did not take effect"
rmmod ksplice_target || fail "a patched module cannot be unloaded"
ksplice-view test-mod | grep -q 'ksplice_target_answer (ksplice_target), pending' \
    || fail "view does not show the unloaded module's functions pending: $(ksplice-view test-mod)"
ksplice-view --verify >/dev/null || fail "verify failed with the module unloaded"
for i in 1 2 3; do
    load_target
    [ "$(target_answer)" = patched ] || fail "reload $i came back unpatched: $(target_answer)"
    unload_target
done
load_target
undo_update test-mod
[ "$(target_answer)" = unpatched ] || fail "undo did not restore: $(target_answer)"
unload_target
