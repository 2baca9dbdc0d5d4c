# Helpers for VM tests; the harness installs this as /lib/ksplice/testlib.sh.
# Each tests/vm/test-*.sh runs in its own shell with `set -eu`, sourcing this.

KSPLICE_KO=/lib/ksplice/ksplice.ko

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Runs "$@", which must fail; its stderr must match the regex $EXPECT_ERR
# when set, and its exit status must be $EXPECT_RC when set.
expect_fail() {
    local rc=0 err
    err=$("$@" 2>&1 >/dev/null) || rc=$?
    [ "$rc" -ne 0 ] || fail "'$*' succeeded but should have failed"
    if [ -n "${EXPECT_RC:-}" ] && [ "$rc" -ne "$EXPECT_RC" ]; then
        fail "'$*' exited $rc, expected $EXPECT_RC (stderr: $err)"
    fi
    if [ -n "${EXPECT_ERR:-}" ] && ! printf '%s' "$err" | grep -Eq -- "$EXPECT_ERR"; then
        fail "'$*' stderr does not match /$EXPECT_ERR/: $err"
    fi
    return 0
}

core_loaded() { grep -q '^ksplice ' /proc/modules; }

load_core() {
    core_loaded || insmod "$KSPLICE_KO" || fail "insmod ksplice.ko failed"
}

unload_core() {
    ! core_loaded || rmmod ksplice || fail "rmmod ksplice failed"
}

# Runs "$@" as the unprivileged user nobody (uid/gid 65534, no capabilities).
as_nobody() { vmtool as-nobody "$@"; }

# Runs "$@" as root but without CAP_SYS_MODULE.
without_cap_sys_module() { vmtool without-cap "$@"; }

UPDATES=/work/updates

# The parent pid as getppid() reports it (busy-box sh sets $PPID from it).
getppid_now() { sh -c 'echo $PPID'; }

# Applies /work/updates/NAME.ko; extra arguments go to ksplice-apply.
apply_update() {
    local name=$1
    shift
    ksplice-apply --core "$KSPLICE_KO" "$@" "$UPDATES/$name.ko" || fail "ksplice-apply $name failed"
}

undo_update() {
    ksplice-undo "$@" || fail "ksplice-undo $* failed"
}

# The ids of the updates ksplice-view --json shows in STATE (applied or
# reversed), in order, one per line.
updates_in_state() {
    local json
    json=$(ksplice-view --json) || fail "ksplice-view --json failed"
    printf '%s\n' "$json" | awk -v want="$1" '
        /^      "id": / { id = $2; gsub(/[",]/, "", id) }
        /^      "state": / { s = $2; gsub(/[",]/, "", s); if (s == want) print id }'
}

# Fails unless ksplice-view succeeds and lists exactly the given update
# ids as applied, in order.
expect_applied() {
    local got
    got=$(updates_in_state applied | tr '\n' ' ')
    [ "$got" = "$* " ] || [ "$got" = "$*" ] || fail "applied updates are '$got', want '$*'"
}

# Undoes every update (newest first) and unloads every update.ko, so the
# next test starts from the original kernel.
cleanup_updates() {
    local id
    core_loaded || return 0
    for id in $(updates_in_state applied | tac) $(updates_in_state reversed | tac); do
        ksplice-undo --unload --tries 20 --retry-ms 100 "$id" >/dev/null 2>&1 || true
    done
    for id in $(updates_in_state reversed | tac); do
        ksplice-undo --unload "$id" >/dev/null 2>&1 || true
    done
}

# The kernel log since the last klog_mark (run-all.sh marks before each
# test). log_buf_len is large enough that nothing scrolls away.
klog_mark() { dmesg | wc -l >/tmp/klog.mark; }
klog_since_mark() { dmesg | tail -n +$(($(cat /tmp/klog.mark 2>/dev/null || echo 0) + 1)); }

# The ksplice: lines of the kernel log since the mark, without timestamps,
# with pauses and addresses normalised (pause N ns, 0x...).
klog_transcript() {
    klog_since_mark | sed -n 's/^\[[^]]*\] //; /^ksplice: /p' \
        | sed -E 's/pause [0-9]+ ns/pause N ns/g; s/0x[0-9a-f]+/0x.../g'
}

# Fails unless klog_transcript equals stdin, as the livepatch selftests
# compare dmesg with an expected transcript.
expect_klog() {
    local want got
    want=$(cat)
    got=$(klog_transcript)
    [ "$got" = "$want" ] || fail "kernel log transcript differs:
--- want
$want
--- got
$got"
}
