# Trampolines and post relocations are written through an alias of the
# pages behind module text while other modules load and unload: with ROX
# execmem each load splits and collapses the huge mapping that text shares
# (set_memory_rw/rox), and the alias must still find the right page, never
# a stale or freed page table's. Apply/undo cycles of a module's update and
# of one with post relocations into update.ko, beside a load/unload loop.
load_core
unload_target
load_target
stop=/tmp/loads-done
rm -f $stop /tmp/loads
(
    n=0
    while [ $n -lt 100 ] && insmod /work/modules/ksplice_nmi.ko && rmmod ksplice_nmi; do
        n=$((n + 1))
    done
    echo $n >/tmp/loads
    touch $stop
) &
rounds=0
while [ ! -e $stop ]; do
    out=$(vmtool cycle "$UPDATES/mod-target.ko" 5) || { wait; fail "module update: $out"; }
    out=$(vmtool cycle "$UPDATES/d-string-literal.ko" 5) || { wait; fail "post relocations: $out"; }
    rounds=$((rounds + 1))
done
wait
loads=$(cat /tmp/loads)
echo "$loads module loads beside $rounds rounds of 5+5 apply/undo cycles"
[ "$loads" -eq 100 ] || fail "the module load/unload loop stopped after $loads"
[ "$rounds" -gt 5 ] || fail "only $rounds rounds ran beside the module loads: the test proved nothing"
[ "$(target_answer)" = unpatched ] || fail "the target was left patched: $(target_answer)"
! grep -q ksplice /proc/loadavg || fail "d-string-literal was left applied"
unload_target
