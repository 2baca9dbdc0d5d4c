# Malformed payloads get bad_payload or EINVAL/EFAULT, never an oops; a
# payload that differs from update.ko's own copy is refused; concurrent
# applies are serialised.
load_core
insmod "$UPDATES/d-string-literal.ko"
ko=$UPDATES/d-string-literal.ko
for m in truncate:0 truncate:1 truncate:100 truncate:215 truncate:216 truncate:500; do
    out=$(vmtool apply-payload "$ko" $m)
    case "$out" in abort=bad_payload*|errno=EINVAL) ;; *) fail "$m: $out" ;; esac
done
for seed in $(seq 1 200); do
    for m in flip:$seed garbage:$seed; do
        out=$(vmtool apply-payload "$ko" $m)
        case "$out" in abort=bad_payload*|abort=wrong_kernel*) ;; *) fail "$m: $out" ;; esac
    done
done
for m in len:0 len:4294967295 len:1000000000; do
    out=$(vmtool apply-payload "$ko" $m)
    case "$out" in errno=EINVAL|errno=EFAULT|abort=bad_payload*) ;; *) fail "$m: $out" ;; esac
done
out=$(vmtool apply-payload "$ko" module:ksplice_no_such_module)
echo "$out" | grep -q '^abort=module_not_loaded' || fail "missing module: $out"
out=$(vmtool apply-payload "$ko" module:ksplice)
echo "$out" | grep -q '^abort=bad_payload' || fail "core as update: $out"
! grep -q ksplice /proc/loadavg || fail "a malformed payload changed /proc/loadavg"
rmmod ksplice_test_d
# Two applies at once: one wins, the other is refused cleanly.
( ksplice-apply --core "$KSPLICE_KO" "$UPDATES/d-string-literal.ko" >/tmp/one 2>&1; echo $? >>/tmp/one ) &
( ksplice-apply --core "$KSPLICE_KO" "$UPDATES/d-string-literal.ko" >/tmp/two 2>&1; echo $? >>/tmp/two ) &
wait
cat /tmp/one /tmp/two
[ "$(cat /tmp/one /tmp/two | grep -c '^0$')" -eq 1 ] || fail "not exactly one apply succeeded"
grep -q 'already_applied' /tmp/one /tmp/two || fail "the loser was not refused with already_applied"
undo_update test-d
expect_applied
