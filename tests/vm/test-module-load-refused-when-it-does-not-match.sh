# An update for a module that is not loaded, built from other source than
# the module's, does not guess: when the module loads, its code does not
# match the update's pre code, so the load is refused with the reason in
# the kernel log, and the module stays unloaded. With the module loaded,
# the same update is refused at apply with no_match.
load_core
unload_target
apply_update modx-target-other-source
EXPECT_ERR='' expect_fail insmod "$TARGET_KO"
target_loaded && fail "the module loaded although its code does not match"
[ ! -e /proc/ksplice_target ] || fail "the refused module left /proc/ksplice_target"
dmesg | grep -q 'ksplice: refusing to load module ksplice_target: an applied update patches it: no_match: ksplice_target_answer' \
    || fail "the kernel log does not say why: $(dmesg | tail -5)"
undo_update test-modx
load_target
[ "$(target_answer)" = unpatched ] || fail "the module is not the original: $(target_answer)"
EXPECT_RC=5 EXPECT_ERR='no_match.*ksplice_target_answer' \
    expect_fail ksplice-apply --core "$KSPLICE_KO" "$UPDATES/modx-target-other-source.ko"
unload_target
