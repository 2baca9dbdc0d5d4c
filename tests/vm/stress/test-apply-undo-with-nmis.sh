# 1,000 apply/undo cycles of getppid (tests/patches/a-global-function) on 4
# vCPUs while one caller pinned to each CPU runs it in a tight loop and
# NMIs arrive on every CPU, whose handler (ksplice_nmi.ko) runs it too: no
# oops, every result is the old or the new one, and NMIs did arrive while
# trampolines were being written.
[ "$(nproc)" -ge 4 ] || fail "needs 4 CPUs, has $(nproc)"
load_core
insmod /work/modules/ksplice_nmi.ko || fail "insmod ksplice_nmi.ko failed"
stop=/tmp/stop-callers
rm -f $stop /tmp/caller.*
for cpu in $(seq 0 $(($(nproc) - 1))); do
    taskset -c "$cpu" vmtool getppid-loop $stop 20000 >/tmp/caller.$cpu &
done
cycles=${STRESS_CYCLES:-1000}
echo KSPLICE-NMI-START
vmtool cycle "$UPDATES/a-global-function.ko" "$cycles" || fail "the apply/undo cycles failed"
echo KSPLICE-NMI-STOP
touch $stop
wait
read -r calls during bad </sys/module/ksplice_nmi/parameters/stats
echo "NMI handler: $calls calls, $during of them inside stop_machine, $bad bad results"
[ "$bad" -eq 0 ] || fail "the NMI handler saw $bad results that were neither old nor new"
[ "$during" -gt 0 ] || fail "no NMI arrived during a stop_machine: the test proved nothing"
for f in /tmp/caller.*; do
    read -r c old new b <"$f" || fail "caller $f printed nothing"
    echo "caller ${f##*.}: $c calls, $old old, $new new, $b bad"
    [ "$b" -eq 0 ] || fail "caller ${f##*.} saw $b bad results"
    [ "$old" -gt 0 ] && [ "$new" -gt 0 ] || fail "caller ${f##*.} did not see both versions"
done
rmmod ksplice_nmi
