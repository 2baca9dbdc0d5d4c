# Shared helpers for the project's shell scripts. Source it; do not run it.

KSPLICE_CACHE=${KSPLICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ksplice}
KERNEL=${KERNEL:-7.3.4}
KCONFIG_BASE=${KCONFIG_BASE:-tinyconfig}
# Heavy builds (kernel preparation, debootstrap) take this lock, one at a
# time on the machine, even for a run with a cache of its own.
KSPLICE_HEAVY_LOCK=${KSPLICE_HEAVY_LOCK:-$KSPLICE_CACHE/heavy.lock}

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs the Debian packages named, if any is missing.
need_debs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root, or install them)"
    log "installing ${missing[*]}"
    mkdir -p "$KSPLICE_CACHE"
    local aptlog="$KSPLICE_CACHE/apt-install.log"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$aptlog" 2>&1 \
        || { tail -n 20 "$aptlog" >&2; die "apt-get install ${missing[*]} failed (log: $aptlog)"; }
}

# The Debian mirror this machine already uses, read from its apt sources.
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(grep -Eo '(https?|file)://[^ ]+/debian/?( |$)' "$f" | grep -v -- '-security' | head -n1 | tr -d ' ')
        if [ -n "$uri" ]; then
            echo "${uri%/}"
            return 0
        fi
    done
    die "no Debian mirror found in /etc/apt/sources.list*"
}

# apt-get or apt-cache (first argument) with a private source list for one
# extra suite; the machine's own package state is never touched.
private_apt() {
    local tool=$1 dir="$KSPLICE_CACHE/apt"
    shift
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    if [ ! -s "$dir/sources.list" ]; then
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie-backports main" \
            >"$dir/sources.list"
    fi
    "$tool" -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

# Downloads PKG at the newest version matching the regex VERSION_RE and
# extracts it into DEST. Prints nothing; DEST/.done marks success.
fetch_deb() {
    local pkg=$1 version_re=$2 dest=$3 version debdir="$KSPLICE_CACHE/debs"
    [ -e "$dest/.done" ] && return 0
    if [ ! -e "$KSPLICE_CACHE/apt/.updated" ]; then
        private_apt apt-get update -qq >&2 || die "apt-get update of the trixie-backports list failed"
        touch "$KSPLICE_CACHE/apt/.updated"
    fi
    version=$(private_apt apt-cache madison "$pkg" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' \
        | grep -E "$version_re" | head -n1 || true)
    [ -n "$version" ] || die "no version of $pkg matching '$version_re' on the mirror"
    mkdir -p "$debdir"
    (cd "$debdir" && private_apt apt-get download -qq "$pkg=$version" >&2) || die "download of $pkg=$version failed"
    rm -rf "$dest" && mkdir -p "$dest"
    dpkg-deb -x "$debdir/${pkg}_${version//:/%3a}_"*.deb "$dest" || die "cannot unpack $pkg"
    touch "$dest/.done"
}

# Prints the lines of the kernel log in FILE (between the harness's dmesg
# markers) that mean the kernel misbehaved: Oops, BUG, WARNING, Call Trace.
kernel_log_problems() {
    sed -n '/^===KSPLICE-DMESG-BEGIN===$/,/^===KSPLICE-DMESG-END===$/p' "$1" \
        | grep -E 'Oops|(^|[^A-Za-z_])BUG([^A-Za-z_]|$)|WARNING|Call Trace' || true
}

# Builds ksplice.ko from a clean copy of kmod/ in DIR against the kernel
# build KDIR (so kmod/ksplice.ko, the test kernel's, stays): DIR/ksplice.ko.
# The build's output goes to DIR/build.log, whose tail is shown on failure.
build_kmod() { # KDIR DIR
    local kdir=$1 dir=$2 top
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    rm -rf "$dir" && mkdir -p "$dir"
    cp -r "$top/kmod/." "$dir/"
    find "$dir" \( -name '*.o' -o -name '*.ko' -o -name '.*.cmd' -o -name '*.mod*' \) -exec rm -f {} +
    ( . "$kdir/ksplice-env.sh" && make -s -C "$kdir" M="$dir" modules ) >"$dir/build.log" 2>&1 \
        || { tail -n 20 "$dir/build.log" >&2; die "building ksplice.ko against $kdir failed"; }
}

# Prints the unpacked source tree of Debian's linux-source at upstream
# version VERSION (e.g. 7.2.11), fetching and unpacking it once.
kernel_source() {
    local version=$1 series srcpkg src
    series=$(echo "$version" | cut -d. -f1-2)
    srcpkg="$KSPLICE_CACHE/src/linux-source-$version"
    src="$srcpkg/linux-source-$series"
    if [ ! -e "$src/.done" ]; then
        fetch_deb "linux-source-$series" "^${version//./\\.}-" "$srcpkg"
        log "unpacking linux-source-$series $version"
        rm -rf "$src"
        tar -C "$srcpkg" -xf "$srcpkg/usr/src/linux-source-$series.tar.xz" || die "cannot unpack kernel source"
        touch "$src/.done"
    fi
    echo "$src"
}
