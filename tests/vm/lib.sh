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
    printf '%s\n' "$json" | sed -n '/^  "updates": \[$/,/^  \]/p' | awk -v want="$1" '
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
    klog_since_mark | sed -n 's/^\[[^]]*\] //; /taints kernel\|module verification failed/d; /^ksplice: /p' \
        | sed -E 's/pause [0-9]+ ns/pause N ns/g; s/0x[0-9a-f]+/0x.../g; s/pid [0-9]+/pid N/g'
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

# Unpacks the package (/work/deb/ksplice_*.deb, from make deb) with
# busybox's dpkg-deb and copies its files into /, as dpkg would install
# them, and puts its /usr/sbin and /usr/bin first on PATH, so that the
# test runs the installed tools and ksplice-apply finds the installed
# ksplice.ko (/lib/modules/$(uname -r)/extra). The harness's own copy of
# ksplice.ko is moved aside until the test ends.
install_package() {
    local deb
    deb=$(ls /work/deb/ksplice_*_amd64.deb 2>/dev/null | head -n1)
    [ -n "$deb" ] || fail "no package in /work/deb (run make deb)"
    rm -rf /tmp/package && mkdir /tmp/package
    dpkg-deb -x "$deb" /tmp/package || fail "dpkg-deb -x $deb failed"
    cp -a /tmp/package/. / || fail "copying the package's files into / failed"
    PATH=/usr/sbin:/usr/bin:$PATH
    [ "$(command -v ksplice-apply)" = /usr/sbin/ksplice-apply ] || fail "ksplice-apply is not the package's"
    [ -r "/lib/modules/$(uname -r)/extra/ksplice.ko" ] || fail "the package has no ksplice.ko for $(uname -r)"
    mv "$KSPLICE_KO" "$KSPLICE_KO.harness"
    trap 'mv "$KSPLICE_KO.harness" "$KSPLICE_KO"' EXIT
}

# The command ksplice.service runs at boot, from the installed unit.
boot_command() {
    sed -n 's/^ExecStart=//p' /lib/systemd/system/ksplice.service
}

# Fails unless the kernel command line has $1 (a test that needs its own
# boot: see its "# vm-run:" line).
need_cmdline() {
    grep -qw -- "$1" /proc/cmdline || fail "needs $1 on the kernel command line (scripts/vm-run --append \"$1\")"
}

# The module-patching target (tests/vm/modules/target, built in-tree).
TARGET_KO=/work/modules/ksplice_target.ko
target_loaded() { grep -q '^ksplice_target ' /proc/modules; }
load_target() { target_loaded || insmod "$TARGET_KO" || fail "insmod ksplice_target.ko failed"; }
unload_target() { ! target_loaded || rmmod ksplice_target || fail "rmmod ksplice_target failed"; }
target_answer() { cat /proc/ksplice_target; }
