# ksplice-view --verify notices when kernel text an update depends on is
# changed behind its back (ksplice_tamper.ko writes one byte through a
# writable alias, as a rootkit or a buggy patcher would): a trampoline byte,
# then a byte of the new code. It names what changed, exits 5 and changes
# nothing; with the bytes put back it verifies again.
load_core
apply_update l-cmdline
TAMPER=/work/modules/ksplice_tamper.ko
# Writes byte $2 at address $1; prints the byte it replaced.
poke() {
    local lines
    lines=$(dmesg | wc -l)
    insmod "$TAMPER" addr="$1" byte="$2" 2>/dev/null && fail "ksplice_tamper stayed loaded"
    dmesg | tail -n +$((lines + 1)) | sed -n "s/.*ksplice_tamper: $1: \([0-9a-f]*\) -> .*/\1/p" | head -n1
    # (busybox insmod tries init_module after finit_module fails: the write runs twice.)
}
kallsyms() { awk -v n="$1" -v m="$2" '$3 == n && ($4 == m || (m == "" && NF == 3)) { print $1; exit }' /proc/kallsyms; }
func=$(kallsyms cmdline_proc_show "")
[ -n "$func" ] || fail "cmdline_proc_show is not in /proc/kallsyms"
site=0x$(printf '%x' $((0x$func + 9)))
old=$(poke "$site" 204)
[ "$old" = e9 ] || fail "the trampoline of cmdline_proc_show is not at +9 (found $old)"
EXPECT_RC=5 EXPECT_ERR='code_changed.*test-l: the trampoline of cmdline_proc_show at .* is no longer the jmp ksplice wrote' \
    expect_fail ksplice-view --verify
[ "$(poke "$site" 233)" = cc ] || fail "could not put the jmp back"
ksplice-view --verify >/dev/null || fail "verify failed with the jmp restored"

# A byte in the middle of the new code in update.ko.
new=$(kallsyms cmdline_proc_show '[ksplice_test_l]')
[ -n "$new" ] || fail "no new cmdline_proc_show in ksplice_test_l"
at=0x$(printf '%x' $((0x$new + 16)))
orig=$(poke "$at" 0)
[ -n "$orig" ] || fail "ksplice_tamper did not say what it replaced"
[ "$orig" != 00 ] || poke "$at" 1 >/dev/null
EXPECT_RC=5 EXPECT_ERR='code_changed.*test-l: the new code at .* is no longer what was applied' \
    expect_fail ksplice-view --verify
poke "$at" $((0x$orig)) >/dev/null
ksplice-view --verify >/dev/null || fail "verify failed with the new code restored"
grep -q ' ksplice$' /proc/cmdline || fail "the update is not active after the test"
undo_update test-l
