// SPDX-License-Identifier: GPL-2.0
/*
 * callbench: the cost per call of a kernel function, for
 * scripts/bench-call. Under QEMU -icount shift=0, 1 ns is 1 instruction.
 *
 *   insmod callbench.ko target=cmdline_proc_show   the live function
 *   insmod callbench.ko target=direct              this module's copy of
 *                                                  the replacement body
 *
 * Prints "callbench: <target>: <calls> calls, <ns> ns/call x100" and
 * fails the load on purpose (-EAGAIN) so it never stays loaded.
 */
#include <linux/kprobes.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/seq_file.h>
#include <linux/slab.h>

static char *target = "direct";
module_param(target, charp, 0);
static unsigned int calls = 20000;
module_param(calls, uint, 0);

typedef int (*show_fn)(struct seq_file *m, void *v);

/* The body livepatch-sample and the ksplice bench update both install. */
static noinline int direct_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s\n", "this has been live patched");
	return 0;
}

/* kallsyms_lookup_name is not exported: a kprobe resolves names. */
static unsigned long lookup(const char *name)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long (*kln)(const char *);
	unsigned long addr;

	if (register_kprobe(&kp) < 0)
		return 0;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);
	if (!memcmp((void *)(addr - 4), "\xf3\x0f\x1e\xfa", 4) || !memcmp((void *)(addr - 4), "\x0f\x1f\x40\xd6", 4))
		addr -= 4;
	kln = (void *)addr;
	return kln(name);
}

static int __init callbench_init(void)
{
	struct seq_file m = { };
	show_fn fn;
	u64 start, ns;
	unsigned int i;

	fn = strcmp(target, "direct") ? (show_fn)lookup(target) : direct_show;
	if (!fn)
		return -ENOENT;
	/* Both cases call through a pointer, as the kernel calls ->show. */
	OPTIMIZER_HIDE_VAR(fn);
	m.size = PAGE_SIZE;
	m.buf = kmalloc(m.size, GFP_KERNEL);
	if (!m.buf)
		return -ENOMEM;
	/* Warm up, then measure. */
	for (i = 0; i < 100; i++) {
		m.count = 0;
		fn(&m, NULL);
	}
	start = ktime_get_ns();
	for (i = 0; i < calls; i++) {
		m.count = 0;
		fn(&m, NULL);
	}
	ns = ktime_get_ns() - start;
	pr_info("callbench: %s: %u calls, %llu ns/call x100 (%.*s)\n", target, calls,
		div_u64(ns * 100, calls), (int)min_t(size_t, m.count, 40), m.buf);
	kfree(m.buf);
	return -EAGAIN;
}
module_init(callbench_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("ksplice benchmark: cost per call of a kernel function");
