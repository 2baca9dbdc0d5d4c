# New code that makes a static call whose key vmlinux exports (the kmalloc
# tracepoint's, in __kmalloc_cache_noprof) gets a static call site naming
# the key, as the kernel's own build of the code has: the module loader
# accepts the update (a site naming a trampoline that was not exported with
# EXPORT_STATIC_CALL_TRAMP makes it refuse the module), the update applies,
# and the event fires from the new code.
load_core
apply_update s-static-call-exported-key
T=/sys/kernel/tracing
E=$T/events/kmem/kmalloc
[ -d $E ] || fail "no kmalloc trace event in the test kernel"
echo > $T/trace
echo 1 > $E/enable
for i in 1 2 3 4 5; do cat /proc/meminfo /proc/self/status >/dev/null; ls -R /sys/kernel >/dev/null 2>&1; done
echo 0 > $E/enable
grep -q 'call_site=0x5ca11' $T/trace || fail "no kmalloc event from the new code: $(grep -c kmalloc $T/trace) kmalloc events"
undo_update test-s
