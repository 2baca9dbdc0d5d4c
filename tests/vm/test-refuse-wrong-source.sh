# Updates that do not fit the running kernel change nothing: pre code built
# from other source is no_match; another release or build is wrong_kernel.
load_core
before=$(cat /proc/uptime | wc -c)
EXPECT_RC=5 EXPECT_ERR='no_match.*uptime_proc_show' expect_fail ksplice-apply --core "$KSPLICE_KO" "$UPDATES/nomatch-on-other-source.ko"
expect_applied
! lsmod | grep -q ksplice_test_nomatch || fail "refused update left loaded"
insmod "$UPDATES/d-string-literal.ko"
out=$(vmtool apply-payload "$UPDATES/d-string-literal.ko" release:6.1.0)
echo "$out" | grep -q '^abort=wrong_kernel' || fail "other release: $out"
out=$(vmtool apply-payload "$UPDATES/d-string-literal.ko" buildid)
echo "$out" | grep -q '^abort=wrong_kernel' || fail "other build: $out"
rmmod ksplice_test_d
! grep -q ksplice /proc/loadavg || fail "/proc/loadavg changed"
