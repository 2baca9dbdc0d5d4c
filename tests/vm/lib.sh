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

# Fails unless ksplice-view lists exactly the given update ids, in order.
expect_applied() {
    local got
    got=$(ksplice-view --json | sed -n 's/.*"id": "\([^"]*\)".*/\1/p' | tr '\n' ' ')
    [ "$got" = "$* " ] || [ "$got" = "$*" ] || fail "applied updates are '$got', want '$*'"
}
