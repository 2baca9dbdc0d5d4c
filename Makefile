# ksplice: rebootless Linux kernel updates.
#
#   make demo   build everything, boot the test VM and show an update
#   make test   every test: cargo test, clippy, fmt, the package, the VM
#               tests and a few real stable fixes (make eval runs them all)
#   make deb    the Debian package, target/deb/ksplice_VERSION_amd64.deb
#
# KDIR=<kernel build dir> builds ksplice.ko against another Rust-enabled
# kernel; KERNEL= and KCONFIG_BASE= select the cached test kernel.
# KERNEL_SOURCE=debian selects Debian's own kernel instead (KERNEL= default
# 7.2.9 there, KERNEL_FLAVOUR= cloud-amd64 or amd64; scripts/debian-kernel):
#   make debian-test   the Debian-kernel smoke test (part of make test)
#   make demo KERNEL_SOURCE=debian   a real stable fix on Debian's stock kernel

HOST_TARGET := x86_64-unknown-linux-gnu
STATIC_BIN  := target/$(HOST_TARGET)/release
# Statically linked, so the tools run in the VM's busybox userland.
STATIC_RUSTFLAGS := -C target-feature=+crt-static

ifeq ($(KERNEL_SOURCE),debian)
KERNEL ?= 7.2.9
endif
export KERNEL_SOURCE KERNEL KERNEL_FLAVOUR
KDIR ?= $(shell KERNEL_SOURCE="$(KERNEL_SOURCE)" KERNEL="$(KERNEL)" KERNEL_FLAVOUR="$(KERNEL_FLAVOUR)" \
	  scripts/test-kernel --print-dir)

.PHONY: all kernel kmod cli deb updates test-modules host-test harness-test package-test lint vm-test stress-test debian-test eval eval-quick bench-headers test demo clean rust-toolchain

all: kmod cli

rust-toolchain:
	@scripts/setup-host

kernel: rust-toolchain
	scripts/test-kernel

kmod: kernel
	@set -e; [ ! -r "$(KDIR)/ksplice-env.sh" ] || . "$(KDIR)/ksplice-env.sh"; \
	  $(MAKE) -C "$(KDIR)" M="$(CURDIR)" modules

cli: rust-toolchain
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" cargo build --release --locked --target $(HOST_TARGET) \
	  -p ksplice-cli -p vmtool

# The tools, ksplice.ko for KDIR (signed with KDIR's key when it has one),
# ksplice.service, man pages and completions, as a .deb (scripts/build-deb).
deb: kmod cli
	KDIR="$(KDIR)" scripts/build-deb

# Updates built by ksplice-create from tests/patches, for the VM tests.
updates: cli kernel
	scripts/build-test-updates

# The VM tests' own kernel modules, and the kernel's livepatch sample.
test-modules: kernel
	scripts/build-test-modules

# The ksplice-create tests run against the cached test kernel.
host-test: rust-toolchain kernel
	eval "$$(scripts/test-kernel --print-env)" && cargo test --workspace --locked

lint: rust-toolchain
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo fmt --all --check

# What the .deb holds, and that it installs and purges.
package-test: deb
	tests/package/test-deb.sh

vm-test: kmod cli updates test-modules deb
	tests/harness/test-vm-run.sh
	scripts/vm-test

# 4 vCPUs, NMIs, 1,000 apply/undo cycles (tests/vm/stress).
stress-test: kmod cli updates test-modules
	scripts/vm-test --stress

# The VM harness's own kernel-log scanner, on sample logs, and that every
# script parses.
harness-test:
	tests/harness/test-kernel-log-scan.sh
	tests/harness/test-scripts-parse.sh

# Debian's stock kernel (KERNEL_SOURCE=debian, default 7.2.9 cloud-amd64)
# boots, loads ksplice.ko and takes a real stable fix (scripts/debian-smoke).
debian-test: cli
	KERNEL_SOURCE=debian KERNEL=$(if $(filter debian,$(KERNEL_SOURCE)),$(KERNEL),7.2.9) scripts/debian-smoke

# The real-fix evaluation (scripts/eval-stable): the fixes of Debian's 7.2
# stable releases, each created, applied, exercised and undone on the
# defconfig test kernel it fixes. Two kernel builds of 20-40 min, then hours.
eval: cli
	@rc=0; eval "$$(scripts/test-kernel --print-env)"; \
	cargo test -q --release -p ksplice-cli --test kernel_scale --test real_fixes -- --ignored || rc=1; \
	for r in "7.2.9 7.2.11" "7.2.11 7.2.12"; do \
	  KCONFIG_BASE=defconfig scripts/eval-stable $$r || rc=1; done; exit $$rc

# Header changes that about 3,000 objects of the defconfig kernel include,
# timed against a full build of it (scripts/bench-headers; an hour or more).
bench-headers: cli
	scripts/bench-headers

# A few of those fixes on the tinyconfig build of 7.2.9 (make test), and a
# real fix that changes a layout, refused, then rewritten with shadow data,
# applied and undone (scripts/eval-rewrites).
eval-quick: cli
	KCONFIG_BASE=tinyconfig scripts/eval-stable --units tests/eval/quick.units \
	  --out target/eval/quick 7.2.9 7.2.11
	scripts/eval-rewrites

test: host-test harness-test lint package-test vm-test stress-test eval-quick debian-test

ifeq ($(KERNEL_SOURCE),debian)
demo: cli
	scripts/debian-smoke --demo
else
demo: kmod cli
	scripts/demo
endif

clean:
	cargo clean
	@[ ! -d "$(KDIR)" ] || $(MAKE) -C "$(KDIR)" M="$(CURDIR)" clean
