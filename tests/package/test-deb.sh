#!/usr/bin/env bash
# The Debian package holds what a server needs and nothing it must build:
# the static tools on PATH, ksplice.ko for the package's kernel where
# ksplice-apply looks (signed when built with a key), ksplice.service with
# its ordering, man pages and completions for every tool, README. It also
# installs into an empty root with dpkg and removes cleanly.
#
#   tests/package/test-deb.sh [DEB]      (default: the newest target/deb/*.deb)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/lib.sh"

deb=${1:-$(ls -t "$top"/target/deb/ksplice_*_amd64.deb 2>/dev/null | head -n1)}
[ -r "$deb" ] || die "no package (run make deb)"
fail() { log "FAIL: $*"; exit 1; }
# Whether gzipped file $1 has a line matching $2 (no pipe: pipefail).
zhas() { local text; text=$(gzip -dc "$1"); grep -q -- "$2" <<<"$text"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/root"
dpkg-deb -e "$deb" "$work/control"
root="$work/root"

release=$(sed -n 's/^ the core module ksplice.ko built for kernel \(.*\)\.$/\1/p' "$work/control/control")
[ -n "$release" ] || fail "control names no kernel release"
for f in usr/sbin/ksplice-apply usr/sbin/ksplice-undo usr/sbin/ksplice-view \
         usr/bin/ksplice-create usr/bin/ksplice-uname; do
    [ -x "$root/$f" ] || fail "$f missing or not executable"
    # Static: no program interpreter, so it runs on any userland.
    headers=$(readelf -l "$root/$f") || fail "$f is not an ELF executable"
    ! grep -q 'Requesting program interpreter' <<<"$headers" || fail "$f is dynamically linked"
done
ko="$root/lib/modules/$release/extra/ksplice.ko"
[ -r "$ko" ] || fail "no ksplice.ko at /lib/modules/$release/extra"
[ "$(modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$release" ] || fail "ksplice.ko is not built for $release"
# make deb signs it with the kernel build's key when there is one.
if [ "${EXPECT_UNSIGNED:-}" != 1 ]; then
    [ "$(tail -c 28 "$ko")" = "~Module signature appended~" ] || fail "ksplice.ko is not signed"
fi
unit="$root/lib/systemd/system/ksplice.service"
[ -r "$unit" ] || fail "no ksplice.service"
for line in DefaultDependencies=no After=local-fs.target 'Before=sysinit.target shutdown.target' \
            'ExecStart=/usr/sbin/ksplice-apply --boot' Type=oneshot WantedBy=sysinit.target; do
    grep -qxF -- "$line" "$unit" || fail "ksplice.service lacks $line"
done
if command -v systemd-analyze >/dev/null; then
    # Unknown keys and bad values are reported; the tools are not installed here.
    problems=$(systemd-analyze verify --man=no "$unit" 2>&1 \
        | grep -v 'Command /usr/sbin/ksplice-apply is not executable' || true)
    [ -z "$problems" ] || fail "systemd-analyze verify: $problems"
fi
for tool in ksplice-create ksplice-apply ksplice-undo ksplice-view ksplice-uname; do
    page="$root/usr/share/man/man8/$tool.8.gz"
    zhas "$page" "^.TH $tool 8" || fail "no man page for $tool"
    zhas "$page" '^.SH "EXIT STATUS"' || fail "$tool(8) has no EXIT STATUS"
    [ -s "$root/usr/share/bash-completion/completions/$tool" ] || fail "no bash completion for $tool"
    [ -s "$root/usr/share/zsh/vendor-completions/_$tool" ] || fail "no zsh completion for $tool"
    [ -s "$root/usr/share/fish/vendor_completions.d/$tool.fish" ] || fail "no fish completion for $tool"
    # The completion offers the tool's options.
    grep -q -- '--help' "$root/usr/share/bash-completion/completions/$tool" || fail "bash completion of $tool has no options"
done
grep -q -- '--persist' "$root/usr/share/bash-completion/completions/ksplice-apply" || fail "bash completion lacks --persist"
zhas "$root/usr/share/doc/ksplice/README.md.gz" '^## Installing on a server' || fail "README missing"
[ -d "$root/var/lib/ksplice" ] || fail "no /var/lib/ksplice"
# Nothing to compile: no toolchain, no kernel build on install.
! grep -Eq 'make|gcc|cargo|rustc|dkms' "$work/control/postinst" || fail "postinst builds something"
! grep -q '^Depends:.*\(gcc\|make\|dkms\|linux-headers\)' "$work/control/control" || fail "depends on a toolchain"

# Install into a minimal root (busybox, no systemd) and purge again; dpkg
# runs the maintainer scripts chrooted there, never on this machine.
inst="$work/inst"
mkdir -p "$inst/var/lib/dpkg/updates" "$inst/var/lib/dpkg/info" "$inst/bin" "$inst/tmp" "$inst/dev"
mknod -m 666 "$inst/dev/null" c 1 3
: >"$inst/var/lib/dpkg/status"
cp "$(command -v busybox)" "$inst/bin/busybox"
for applet in sh rm; do ln -s busybox "$inst/bin/$applet"; done
dpkg --root="$inst" --log=/dev/null -i "$deb" >/dev/null || fail "dpkg -i failed"
[ -x "$inst/usr/sbin/ksplice-apply" ] || fail "installed root lacks ksplice-apply"
version=$(chroot "$inst" /usr/sbin/ksplice-apply --version) || fail "installed ksplice-apply does not run"
[ "${version%% *}" = ksplice-apply ] || fail "installed ksplice-apply --version: $version"
mkdir -p "$inst/var/lib/ksplice/kernels/$release"
dpkg --root="$inst" --log=/dev/null --purge ksplice 2>&1 >/dev/null | grep -v "directory '/var/lib' not empty" >&2 || true
[ -z "$(dpkg --root="$inst" -l ksplice 2>/dev/null | grep '^ii')" ] || fail "dpkg --purge left ksplice installed"
[ ! -e "$inst/usr/sbin/ksplice-apply" ] || fail "purge left ksplice-apply"
[ ! -e "$inst/var/lib/ksplice" ] || fail "purge left the stored updates"
log "ok: $(basename "$deb")"
