// SPDX-License-Identifier: GPL-2.0
/*
 * For the verify test: writes one byte of kernel text, as a rootkit or a
 * buggy text patcher would, through a writable alias of its page, so that
 * `ksplice-view --verify` must notice. Loading it with addr=A byte=B writes
 * B at A and prints the byte it replaced; it then refuses to stay loaded
 * (-ECANCELED), so it can be loaded again to put the old byte back. Only
 * ever pointed at a trampoline that nothing runs while it is changed.
 */
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/vmalloc.h>
#include <asm/sync_core.h>

static unsigned long addr;
module_param(addr, ulong, 0);
static int byte = -1;
module_param(byte, int, 0);

static int __init ksplice_tamper_init(void)
{
	struct page *page;
	u8 *alias, old;

	if (!addr || byte < 0 || byte > 0xff)
		return -EINVAL;
	/* vmlinux text is in the direct map's image alias; module text is not. */
	page = virt_addr_valid((void *)addr) ? virt_to_page((void *)addr)
					     : vmalloc_to_page((void *)addr);
	if (!page)
		return -EINVAL;
	alias = vmap(&page, 1, VM_MAP, PAGE_KERNEL);
	if (!alias)
		return -ENOMEM;
	old = alias[offset_in_page(addr)];
	WRITE_ONCE(alias[offset_in_page(addr)], (u8)byte);
	vunmap(alias);
	sync_core();
	pr_info("ksplice_tamper: %#lx: %02x -> %02x\n", addr, old, byte);
	return -ECANCELED;
}

module_init(ksplice_tamper_init);
MODULE_DESCRIPTION("ksplice test: overwrite one byte of kernel text");
MODULE_LICENSE("GPL");
