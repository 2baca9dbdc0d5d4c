# Every update.ko that ksplice-create built loads without ksplice.ko, needs
# no unresolved symbols, changes nothing and unloads again; one that uses
# ksplice.ko's shadow data API depends on it and does not load without it.
unload_core
ls /work/updates/*.ko >/dev/null 2>&1 || fail "no test updates in /work/updates"
loadavg_before=$(cut -d' ' -f4 /proc/loadavg)
for ko in /work/updates/*.ko; do
    name=$(basename "$ko" .ko)
    if grep -aq 'depends=ksplice' "$ko"; then
        ! insmod "$ko" 2>/dev/null || fail "$name loaded without the ksplice.ko it depends on"
        continue
    fi
    dmesg -c >/dev/null
    insmod "$ko" || fail "insmod $name failed"
    log=$(dmesg)
    echo "$log" | grep -q "inert until applied" || fail "$name: no inert message: $log"
    ! echo "$log" | grep -qi "unknown symbol" || fail "$name: unresolved symbols: $log"
    # Nothing changed: the old behaviour is still there.
    ! grep -q ksplice /proc/loadavg || fail "$name changed /proc/loadavg"
    [ "$(cut -d' ' -f4 /proc/loadavg | cut -d/ -f2)" -lt 100000 ] || fail "$name changed nr_threads"
    ppid=$(sh -c 'echo $PPID')
    [ "$ppid" -lt 1000000 ] || fail "$name changed getppid: $ppid"
    mod=$(lsmod | awk '/^ksplice_test_/ {print $1}')
    rmmod "$mod" || fail "rmmod $mod failed"
done
