/* SPDX-License-Identifier: GPL-2.0 */
/* The C glue in helpers.c, called from Rust (declared again in sys.rs). */
#ifndef KSPLICE_HELPERS_H
#define KSPLICE_HELPERS_H

#include <linux/types.h>

struct module;
struct task_struct;

/* An address range [start, end) a stack must not return into. */
struct ksplice_range {
	unsigned long start, end;
};

/* Who was in the way of a stack check. */
struct ksplice_busy {
	unsigned long addr;
	int pid;
	char comm[16];
};

const char *ksplice_helper_kernel_release(void);
int ksplice_helper_init_kallsyms(void);
int ksplice_helper_for_each_match(const char *name, int (*fn)(void *, unsigned long), void *data);
int ksplice_helper_build_id(u8 *out, int max);
struct module *ksplice_helper_get_module(const char *name);
void ksplice_helper_put_module(struct module *mod);
const char *ksplice_helper_module_name(struct module *mod);
unsigned long ksplice_helper_module_symbol(struct module *mod, const char *name, unsigned long *size);
bool ksplice_helper_module_owns(struct module *mod, unsigned long addr, unsigned long len);
void *ksplice_helper_map(unsigned long addr, unsigned long len);
void ksplice_helper_unmap(void *alias);
void ksplice_helper_lock_text(void);
void ksplice_helper_unlock_text(void);
int ksplice_helper_stop_machine(int (*fn)(void *), void *data);
void ksplice_helper_sync_core(void);
unsigned int ksplice_helper_num_online_cpus(void);
u64 ksplice_helper_ktime_ns(void);
u64 ksplice_helper_real_ns(void);
/* A task and its switch count when its stack was walked outside the stop. */
struct ksplice_snap {
	struct task_struct *task;
	unsigned long switches;
};

int ksplice_helper_snapshot_stacks(const struct ksplice_range *r, unsigned int n,
				   struct ksplice_snap *snap, unsigned int cap, unsigned int *count,
				   struct ksplice_busy *busy);
int ksplice_helper_recheck_stacks(const struct ksplice_range *r, unsigned int n,
				  const struct ksplice_snap *snap, unsigned int count,
				  struct ksplice_busy *busy);

#endif
