# 100 apply/undo cycles while every CPU reads /proc/loadavg: no oops, and
# every line seen is either the old or the new format.
load_core
stop=/tmp/stop-readers
rm -f $stop
for cpu in $(seq 0 $(($(nproc) - 1))); do
    (
        while [ ! -e $stop ]; do
            line=$(taskset -c $cpu cat /proc/loadavg)
            echo "$line" | grep -Eq '^[0-9]+\.[0-9]+ [0-9]+\.[0-9]+ [0-9]+\.[0-9]+ [0-9]+/[0-9]+ [0-9]+( ksplice)?$' \
                || echo "bad line: $line" >>/tmp/bad-lines
        done
    ) &
done
for i in $(seq 1 100); do
    ksplice-apply --core "$KSPLICE_KO" "$UPDATES/d-string-literal.ko" >/dev/null || fail "apply #$i failed"
    ksplice-undo test-d >/dev/null || fail "undo #$i failed"
done
touch $stop
wait
[ ! -e /tmp/bad-lines ] || fail "torn output: $(head -3 /tmp/bad-lines)"
expect_applied
