# ksplice-view reports the empty update list as text and JSON, and says
# clearly (exit 3) when the core module is not loaded.
unload_core
EXPECT_RC=3 EXPECT_ERR='not loaded.*|insmod' expect_fail ksplice-view
load_core
out=$(ksplice-view)
echo "$out"
echo "$out" | grep -q "no updates applied (kernel $(uname -r))" || fail "unexpected text output"
json=$(ksplice-view --json)
echo "$json"
echo "$json" | grep -q '"updates": \[\]' || fail "JSON lacks an empty updates list"
echo "$json" | grep -q "\"kernel_release\": \"$(uname -r)\"" || fail "JSON lacks the kernel release"
EXPECT_RC=2 EXPECT_ERR="no update with id 'nosuch'" expect_fail ksplice-view nosuch
