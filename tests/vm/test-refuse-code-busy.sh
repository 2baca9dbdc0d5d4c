# kthreadd is always on its own stack: the update is refused as code_busy
# after the retries, naming the task, and the text is unchanged (a second
# attempt still matches the original code byte for byte instead of
# failing with no_match).
load_core
for attempt in 1 2; do
    EXPECT_RC=5 EXPECT_ERR='code_busy.*kthreadd' expect_fail \
        ksplice-apply --core "$KSPLICE_KO" --tries 3 --retry-ms 50 "$UPDATES/busy-kthreadd.ko"
done
expect_applied
! lsmod | grep -q ksplice_test_busy || fail "refused update left loaded"
