// SPDX-License-Identifier: GPL-2.0
/*
 * For the NMI stress test: an NMI handler that runs a function ksplice is
 * patching (__do_sys_getppid, the target of tests/patches/a-global-function),
 * so NMIs that arrive while a trampoline is written execute it. Each call's
 * result must be the old one or the new one (the old plus 1000000).
 *
 * /sys/module/ksplice_nmi/parameters/stats reads
 * "calls during_stop bad": NMI calls, those that interrupted a stop_machine
 * stopper thread, and results that were neither old nor new.
 */
#include <linux/atomic.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <asm/nmi.h>

static long (*target)(void);
static atomic_long_t calls, during_stop, bad;

static int ksplice_nmi_handler(unsigned int type, struct pt_regs *regs)
{
	long want, got;

	rcu_read_lock();
	want = task_tgid_vnr(rcu_dereference(current->real_parent));
	rcu_read_unlock();
	got = target();
	atomic_long_inc(&calls);
	if (!strncmp(current->comm, "migration/", 10))
		atomic_long_inc(&during_stop);
	if (got != want && got != want + 1000000)
		atomic_long_inc(&bad);
	return NMI_HANDLED;
}

static int stats_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%ld %ld %ld\n", atomic_long_read(&calls),
			  atomic_long_read(&during_stop), atomic_long_read(&bad));
}

static const struct kernel_param_ops stats_ops = { .get = stats_get };
module_param_cb(stats, &stats_ops, NULL, 0444);

/* The address of a kernel function by name: a kprobe resolves it. */
static unsigned long lookup(const char *name)
{
	struct kprobe kp = { .symbol_name = name };
	unsigned long addr;
	u8 before[4];

	if (register_kprobe(&kp) < 0)
		return 0;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);
	if (!copy_from_kernel_nofault(before, (void *)(addr - 4), 4) &&
	    (!memcmp(before, "\xf3\x0f\x1e\xfa", 4) || !memcmp(before, "\x0f\x1f\x40\xd6", 4)))
		addr -= 4;
	return addr;
}

static int __init ksplice_nmi_init(void)
{
	target = (void *)lookup("__do_sys_getppid");
	if (!target)
		return -ENOENT;
	return register_nmi_handler(NMI_UNKNOWN, ksplice_nmi_handler, 0, "ksplice_nmi");
}

static void __exit ksplice_nmi_exit(void)
{
	unregister_nmi_handler(NMI_UNKNOWN, "ksplice_nmi");
}

module_init(ksplice_nmi_init);
module_exit(ksplice_nmi_exit);
MODULE_DESCRIPTION("ksplice test: an NMI handler that runs a patched function");
MODULE_LICENSE("GPL");
