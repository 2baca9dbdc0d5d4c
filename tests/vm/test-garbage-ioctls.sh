# Unknown ioctl numbers, wrong sizes and bad pointers get ENOTTY/EFAULT,
# never an oops (the harness fails the run on any Oops/WARNING).
load_core
vmtool ioctl-garbage /dev/ksplice
# The module still answers afterwards.
ksplice-view >/dev/null || fail "ksplice-view failed after the garbage"
