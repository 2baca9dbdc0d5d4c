# Fault injection over every allocation of apply and of undo: with the
# N-th allocation failing, for every N the operation reaches, the kernel is
# either unchanged (refused) or changed completely (succeeded): nothing
# can fail after the commit point.
load_core
D=/sys/kernel/debug
[ -d $D/failslab ] || fail "no failslab in debugfs (CONFIG_FAILSLAB, CONFIG_FAULT_INJECTION_DEBUG_FS)"
echo N >$D/failslab/ignore-gfp-wait
echo N >$D/fail_page_alloc/ignore-gfp-wait
echo 0 >$D/fail_page_alloc/min-order
for f in failslab fail_page_alloc; do echo 0 >$D/$f/verbose; done
out=$(vmtool fail-nth-sweep "$UPDATES/a-global-function.ko") || fail "fault injection: $out"
echo "$out"
for f in failslab fail_page_alloc; do echo Y >$D/$f/ignore-gfp-wait; done
echo 1 >$D/fail_page_alloc/min-order
