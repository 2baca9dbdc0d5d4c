# ksplice.ko loads and unloads cleanly 20 times in a row, creating and
# removing /dev/ksplice each time.
for i in $(seq 1 20); do
    insmod "$KSPLICE_KO" || fail "insmod #$i failed"
    [ -c /dev/ksplice ] || fail "/dev/ksplice missing after insmod #$i"
    rmmod ksplice || fail "rmmod #$i failed"
    [ ! -e /dev/ksplice ] || fail "/dev/ksplice still there after rmmod #$i"
done
dmesg | grep -q 'ksplice: core loaded' || fail "no load message in the kernel log"
