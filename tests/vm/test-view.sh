# ksplice-view reports the empty update list as text and JSON (with its
# schema version), and says clearly (exit 3) when the core module is not
# loaded; ksplice-uname then prints what uname does.
unload_core
EXPECT_RC=3 EXPECT_ERR='not loaded.*|insmod' expect_fail ksplice-view
# Still reported without ksplice.ko: the stored set and the boot guard.
out=$(ksplice-view 2>/dev/null || true)
echo "$out" | grep -q '^automatic re-apply at boot: ' || fail "no report without ksplice.ko: $out"
load_core
out=$(ksplice-view)
echo "$out"
echo "$out" | grep -q "no updates applied (kernel $(uname -r))" || fail "unexpected text output"
json=$(ksplice-view --json)
echo "$json"
echo "$json" | grep -q '"updates": \[\]' || fail "JSON lacks an empty updates list"
echo "$json" | grep -q "\"kernel_release\": \"$(uname -r)\"" || fail "JSON lacks the kernel release"
EXPECT_RC=2 EXPECT_ERR="no update with id 'nosuch'" expect_fail ksplice-view nosuch
echo "$json" | grep -q '"schema_version": 1' || fail "JSON lacks schema_version"
echo "$json" | grep -q '"core_loaded": true' || fail "JSON lacks core_loaded"
echo "$json" | grep -q '"effective_release": "'"$(uname -r)"'"' || fail "JSON effective release is not the running one"
[ "$(ksplice-uname -r)" = "$(uname -r)" ] || fail "ksplice-uname -r with no updates: $(ksplice-uname -r)"
[ "$(ksplice-uname -a)" = "$(uname -a)" ] || fail "ksplice-uname -a differs from uname -a: $(ksplice-uname -a)"
