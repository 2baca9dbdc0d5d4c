# /dev/ksplice is a character device owned by root with mode 0600.
load_core
[ -c /dev/ksplice ] || fail "/dev/ksplice is not a character device"
mode=$(stat -c %a /dev/ksplice)
[ "$mode" = 600 ] || fail "/dev/ksplice has mode $mode, want 600"
owner=$(stat -c %u:%g /dev/ksplice)
[ "$owner" = 0:0 ] || fail "/dev/ksplice is owned by $owner, want 0:0"
