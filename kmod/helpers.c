// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for ksplice.ko: only what Rust cannot reach (macros, static
 * inlines, opaque structs, unexported symbols found through kallsyms),
 * each a small function, as rust/helpers does. The logic lives in Rust.
 */
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/elf.h>
#include <linux/kallsyms.h>
#include <linux/kprobes.h>
#include <linux/memory.h>
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/smp.h>
#include <linux/stop_machine.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include <linux/vmalloc.h>
#include <asm/sync_core.h>
#include <asm/unwind.h>

#include "helpers.h"

/* The release string of the running kernel; uts_namespace is opaque to bindgen. */
const char *ksplice_helper_kernel_release(void)
{
	return init_utsname()->release;
}

/* ---- kallsyms: unexported symbols this module needs ---- */

typedef unsigned long (*lookup_name_t)(const char *name);
typedef int (*each_match_t)(int (*fn)(void *, unsigned long), const char *name, void *data);
typedef int (*stop_cpuslocked_t)(cpu_stop_fn_t fn, void *data, const struct cpumask *cpus);
typedef struct task_struct *(*idle_task_t)(int cpu);
typedef struct module *(*find_module_t)(const char *name);
typedef void (*put_task_stack_t)(struct task_struct *tsk);

static lookup_name_t ks_lookup_name;
static each_match_t ks_each_match;
static stop_cpuslocked_t ks_stop_cpuslocked;
static idle_task_t ks_idle_task;
static find_module_t ks_find_module;
static put_task_stack_t ks_put_task_stack;
static struct mutex *ks_text_mutex;
static const char *ks_notes_start, *ks_notes_end;

/*
 * kallsyms_lookup_name is not exported; register_kprobe resolves a symbol
 * name with it, so a kprobe on it yields its address. With IBT the probe
 * sits after the ENDBR (or its sealed poison), 4 bytes in.
 */
static unsigned long find_kallsyms_lookup_name(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long addr;
	u8 before[4];

	if (register_kprobe(&kp) < 0)
		return 0;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);
	if (copy_from_kernel_nofault(before, (void *)(addr - 4), 4) == 0 &&
	    (!memcmp(before, "\xf3\x0f\x1e\xfa", 4) || !memcmp(before, "\x0f\x1f\x40\xd6", 4)))
		addr -= 4;
	return addr;
}

int ksplice_helper_init_kallsyms(void)
{
	ks_lookup_name = (lookup_name_t)find_kallsyms_lookup_name();
	if (!ks_lookup_name)
		return -ENOENT;
	ks_each_match = (each_match_t)ks_lookup_name("kallsyms_on_each_match_symbol");
	ks_stop_cpuslocked = (stop_cpuslocked_t)ks_lookup_name("stop_machine_cpuslocked");
	ks_idle_task = (idle_task_t)ks_lookup_name("idle_task");
	ks_find_module = (find_module_t)ks_lookup_name("find_module");
	ks_put_task_stack = (put_task_stack_t)ks_lookup_name("put_task_stack");
	ks_text_mutex = (struct mutex *)ks_lookup_name("text_mutex");
	ks_notes_start = (const char *)ks_lookup_name("__start_notes");
	ks_notes_end = (const char *)ks_lookup_name("__stop_notes");
	if (!ks_each_match || !ks_stop_cpuslocked || !ks_idle_task || !ks_find_module ||
	    !ks_put_task_stack || !ks_text_mutex)
		return -ENOENT;
	return 0;
}

int ksplice_helper_for_each_match(const char *name, int (*fn)(void *, unsigned long), void *data)
{
	return ks_each_match(fn, name, data);
}

#define KSPLICE_NT_GNU_BUILD_ID 3	/* from the ELF gABI; not in kernel headers */

/* The GNU build id of the running vmlinux, from its .notes section. */
int ksplice_helper_build_id(u8 *out, int max)
{
	const char *p = ks_notes_start;

	while (p && p + sizeof(Elf64_Nhdr) <= ks_notes_end) {
		const Elf64_Nhdr *n = (const Elf64_Nhdr *)p;
		const char *name = p + sizeof(*n);
		const char *desc = name + ALIGN(n->n_namesz, 4);

		if (desc + ALIGN(n->n_descsz, 4) > ks_notes_end)
			break;
		if (n->n_type == KSPLICE_NT_GNU_BUILD_ID && n->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
			int len = min_t(int, n->n_descsz, max);

			memcpy(out, desc, len);
			return len;
		}
		p = desc + ALIGN(n->n_descsz, 4);
	}
	return 0;
}

/* ---- update modules ---- */

/* Finds a live module by name and takes a reference; NULL if absent. */
struct module *ksplice_helper_get_module(const char *name)
{
	struct module *mod;

	rcu_read_lock();
	mod = ks_find_module(name);
	if (mod && (mod->state != MODULE_STATE_LIVE || !try_module_get(mod)))
		mod = NULL;
	rcu_read_unlock();
	return mod;
}

void ksplice_helper_put_module(struct module *mod)
{
	module_put(mod);
}

const char *ksplice_helper_module_name(struct module *mod)
{
	return mod->name;
}

/* Address and size of a defined symbol of a module, from its kallsyms. */
unsigned long ksplice_helper_module_symbol(struct module *mod, const char *name, unsigned long *size)
{
	struct mod_kallsyms *kallsyms;
	unsigned long addr = 0;
	unsigned int i;

	rcu_read_lock();
	kallsyms = rcu_dereference(mod->kallsyms);
	for (i = 0; kallsyms && i < kallsyms->num_symtab; i++) {
		const Elf_Sym *sym = &kallsyms->symtab[i];

		if (sym->st_shndx != SHN_UNDEF && !strcmp(kallsyms->strtab + sym->st_name, name)) {
			addr = sym->st_value;
			*size = sym->st_size;
			break;
		}
	}
	rcu_read_unlock();
	return addr;
}

/* Whether [addr, addr + len) lies inside one memory region of the module. */
bool ksplice_helper_module_owns(struct module *mod, unsigned long addr, unsigned long len)
{
	for_each_mod_mem_type(type) {
		const struct module_memory *mem = &mod->mem[type];
		unsigned long base = (unsigned long)mem->base;

		if (addr >= base && addr + len >= addr && addr + len <= base + mem->size)
			return true;
	}
	return false;
}

/* ---- writing text ---- */

/*
 * A writable alias of the (at most two) pages holding [addr, addr + len),
 * as text_poke does: module text is vmalloc memory, core text is in the
 * kernel image. Returns the alias of addr; ksplice_helper_unmap undoes it.
 */
void *ksplice_helper_map(unsigned long addr, unsigned long len)
{
	struct page *pages[2];
	unsigned long first = addr & PAGE_MASK;
	int n = ((addr + len - 1) & PAGE_MASK) == first ? 1 : 2;
	int i;
	void *alias;

	if (len == 0 || len > PAGE_SIZE)
		return NULL;
	for (i = 0; i < n; i++) {
		unsigned long page = first + i * PAGE_SIZE;

		pages[i] = is_vmalloc_or_module_addr((void *)page) ? vmalloc_to_page((void *)page)
								  : virt_to_page((void *)page);
		if (!pages[i])
			return NULL;
	}
	alias = vmap(pages, n, VM_MAP, PAGE_KERNEL);
	return alias ? alias + offset_in_page(addr) : NULL;
}

void ksplice_helper_unmap(void *alias)
{
	vunmap((void *)((unsigned long)alias & PAGE_MASK));
}

/* Lock order as every kernel text patcher: cpus_read_lock, then text_mutex. */
void ksplice_helper_lock_text(void)
{
	cpus_read_lock();
	mutex_lock(ks_text_mutex);
}

void ksplice_helper_unlock_text(void)
{
	mutex_unlock(ks_text_mutex);
	cpus_read_unlock();
}

/* Runs fn on every online CPU at once; the caller holds ksplice_helper_lock_text. */
int ksplice_helper_stop_machine(int (*fn)(void *), void *data)
{
	return ks_stop_cpuslocked(fn, data, cpu_online_mask);
}

void ksplice_helper_sync_core(void)
{
	sync_core();
}

unsigned int ksplice_helper_num_online_cpus(void)
{
	return num_online_cpus();
}

u64 ksplice_helper_ktime_ns(void)
{
	return ktime_get_ns();
}

u64 ksplice_helper_real_ns(void)
{
	return ktime_get_real_ns();
}

/* ---- the stack check, inside stop_machine ---- */

static bool in_ranges(unsigned long addr, const struct ksplice_range *r, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (addr >= r[i].start && addr < r[i].end)
			return true;
	return false;
}

/*
 * Walks one task's stack with the ORC unwinder, the way
 * arch_stack_walk_reliable does. Returns 0 if no frame (including the
 * interrupted IP of a preempted task) is inside the ranges, 1 if one is,
 * -EINVAL if the stack cannot be walked reliably. A task whose stack is
 * already gone (it exited) runs nothing: 0.
 */
static int check_task(struct task_struct *task, const struct ksplice_range *r, unsigned int n,
		      unsigned long *hit)
{
	struct unwind_state state;
	struct pt_regs *regs;
	unsigned long addr;
	int ret = 0;

	if (!try_get_task_stack(task))
		return 0;
	for (unwind_start(&state, task, NULL, NULL); !unwind_done(&state) && !unwind_error(&state);
	     unwind_next_frame(&state)) {
		regs = unwind_get_entry_regs(&state, NULL);
		if (regs && user_mode(regs))
			goto out;
		addr = unwind_get_return_address(&state);
		if (!addr) {
			ret = -EINVAL;
			goto out;
		}
		if (in_ranges(addr, r, n)) {
			*hit = addr;
			ret = 1;
			goto out;
		}
	}
	if (unwind_error(&state))
		ret = -EINVAL;
out:
	/* Our reference was not the last (try_get needed one), so this frees nothing. */
	ks_put_task_stack(task);
	return ret;
}

static void report(struct ksplice_busy *busy, struct task_struct *t, bool idle)
{
	busy->pid = idle ? 0 : t->pid;
	memcpy(busy->comm, t->comm, sizeof(busy->comm));
}

/* Every switch away from a task counts in one of these. */
static unsigned long switches(struct task_struct *t)
{
	return READ_ONCE(t->nvcsw) + READ_ONCE(t->nivcsw);
}

#define KSPLICE_RECHECK (~0UL)

/*
 * Phase one, outside stop_machine: walks every task's stack and records
 * its switch count from before the walk. A task that was running, whose
 * stack could not be walked, or that was switched during the walk is
 * marked for a full re-check inside the stop. Returns 1 (busy), 0, or
 * -ENOSPC if more than cap tasks exist (the caller grows the array).
 */
int ksplice_helper_snapshot_stacks(const struct ksplice_range *r, unsigned int n,
				   struct ksplice_snap *snap, unsigned int cap, unsigned int *count,
				   struct ksplice_busy *busy)
{
	struct task_struct *g, *t;
	unsigned int i = 0;
	int ret = 0;

	rcu_read_lock();
	for_each_process_thread(g, t) {
		unsigned long before = switches(t);
		int rc = 0;

		if (i == cap) {
			ret = -ENOSPC;
			goto out;
		}
		snap[i].task = t;
		snap[i].switches = KSPLICE_RECHECK;
		if (!READ_ONCE(t->on_cpu)) {
			rc = check_task(t, r, n, &busy->addr);
			if (rc == 1 && switches(t) == before && !READ_ONCE(t->on_cpu)) {
				report(busy, t, false);
				ret = 1;
				goto out;
			}
			if (rc == 0 && switches(t) == before && !READ_ONCE(t->on_cpu))
				snap[i].switches = before;
		}
		i++;
	}
out:
	rcu_read_unlock();
	*count = i;
	return ret;
}

/*
 * Phase two, inside stop_machine: nothing runs, so a task whose switch
 * count is unchanged since its phase-one walk has not run since and its
 * stack is still the one checked. Every other task (new ones, ones that
 * ran, the idle tasks) gets the full walk here. This is exactly as safe as
 * walking everything inside the stop, and much shorter.
 */
int ksplice_helper_recheck_stacks(const struct ksplice_range *r, unsigned int n,
				  const struct ksplice_snap *snap, unsigned int count,
				  struct ksplice_busy *busy)
{
	struct task_struct *g, *t;
	unsigned int i = 0;
	int cpu, ret = 0;

	rcu_read_lock();
	for_each_process_thread(g, t) {
		/*
		 * The task list is in phase-one order unless tasks came or went.
		 * KSPLICE_RECHECK never equals a real count, so it needs no test.
		 */
		if (likely(i < count && snap[i].task == t)) {
			if (likely(snap[i++].switches == switches(t)))
				continue;
		} else if (i + 1 < count && snap[i + 1].task == t) {
			/* The task before this one exited. */
			i += 2;
			if (snap[i - 1].switches == switches(t))
				continue;
		}
		if (READ_ONCE(t->on_cpu))
			continue;
		ret = check_task(t, r, n, &busy->addr);
		if (ret) {
			report(busy, t, false);
			goto out;
		}
	}
out:
	rcu_read_unlock();
	if (ret)
		return ret;
	for_each_online_cpu(cpu) {
		t = ks_idle_task(cpu);
		if (READ_ONCE(t->on_cpu))
			continue;
		ret = check_task(t, r, n, &busy->addr);
		if (ret) {
			report(busy, t, true);
			return ret;
		}
	}
	return 0;
}
