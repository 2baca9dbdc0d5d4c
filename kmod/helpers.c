// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for ksplice.ko, as rust/helpers does: one-line wrappers of what
 * Rust cannot reach (macros, static inlines, opaque structs) and of
 * unexported kernel functions, which are found through kallsyms at load.
 * The logic (matching, the stack check, trampolines) lives in Rust.
 */
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/ftrace.h>
#include <linux/jump_label.h>
#include <linux/kallsyms.h>
#include <linux/kdebug.h>
#include <linux/kprobes.h>
#include <linux/livepatch.h>
#include <linux/memory.h>
#include <linux/module.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/sched/task_stack.h>
#include <linux/static_call.h>
#include <linux/stop_machine.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include <linux/vmalloc.h>
#include <asm/sync_core.h>
#include <asm/text-patching.h>
#include <asm/unwind.h>

#include "helpers.h"
#include "include/ksplice/patch.h"

static_assert(sizeof(struct unwind_state) <= KSPLICE_UNWIND_STATE_SIZE);

/* ---- kallsyms ---- */

static unsigned long (*ks_lookup_name)(const char *name);
static int (*ks_each_match)(int (*fn)(void *, unsigned long), const char *name, void *data);
static int (*ks_stop_cpuslocked)(cpu_stop_fn_t fn, void *data, const struct cpumask *cpus);
static struct task_struct *(*ks_idle_task)(int cpu);
static struct module *(*ks_find_module)(const char *name);
static void (*ks_put_task_stack)(struct task_struct *tsk);
static struct kprobe *(*ks_get_kprobe)(void *addr);
static bool (*ks_within_kprobe_blacklist)(unsigned long addr);
static struct ftrace_rec_iter *(*ks_rec_iter_start)(void);
static struct ftrace_rec_iter *(*ks_rec_iter_next)(struct ftrace_rec_iter *iter);
static struct dyn_ftrace *(*ks_rec_iter_record)(struct ftrace_rec_iter *iter);
static unsigned long (*ks_find_rec_direct)(unsigned long ip);
static struct mutex *ks_text_mutex, *ks_kprobe_mutex, *ks_ftrace_lock, *ks_klp_mutex;
static struct list_head *ks_klp_patches;
static struct mm_struct *ks_init_mm;
static unsigned long ks_stext, ks_end;

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

static int count_match(void *data, unsigned long addr)
{
	unsigned long *found = data;

	found[found[1] ? 2 : 1] = addr;
	found[0]++;
	return 0;
}

/* The address of a symbol kallsyms has exactly once, else 0. */
static unsigned long unique(const char *name)
{
	unsigned long found[3] = { 0, 0, 0 };

	ks_each_match(count_match, name, found);
	return found[0] == 1 ? found[1] : 0;
}

int ksplice_helper_init_kallsyms(struct ksplice_symbols *out)
{
	ks_lookup_name = (void *)find_kallsyms_lookup_name();
	if (!ks_lookup_name)
		return -ENOENT;
	ks_each_match = (void *)ks_lookup_name("kallsyms_on_each_match_symbol");
	if (!ks_each_match)
		return -ENOENT;
	ks_stop_cpuslocked = (void *)unique("stop_machine_cpuslocked");
	ks_idle_task = (void *)unique("idle_task");
	ks_find_module = (void *)unique("find_module");
	ks_put_task_stack = (void *)unique("put_task_stack");
	ks_get_kprobe = (void *)unique("get_kprobe");
	ks_within_kprobe_blacklist = (void *)unique("within_kprobe_blacklist");
	ks_rec_iter_start = (void *)unique("ftrace_rec_iter_start");
	ks_rec_iter_next = (void *)unique("ftrace_rec_iter_next");
	ks_rec_iter_record = (void *)unique("ftrace_rec_iter_record");
	ks_find_rec_direct = (void *)unique("ftrace_find_rec_direct");
	ks_text_mutex = (void *)unique("text_mutex");
	ks_kprobe_mutex = (void *)unique("kprobe_mutex");
	ks_ftrace_lock = (void *)unique("ftrace_lock");
	ks_klp_mutex = (void *)unique("klp_mutex");
	ks_klp_patches = (void *)unique("klp_patches");
	ks_init_mm = (void *)unique("init_mm");
	ks_stext = unique("_stext");
	ks_end = unique("_end");
	out->rcu_tasks_percpu = unique("rcu_tasks__percpu");
	out->rcu_tasks = unique("rcu_tasks");
	out->return_to_handler = unique("return_to_handler");
	out->kretprobe_trampoline = unique("__kretprobe_trampoline");
	out->rethook_trampoline = unique("arch_rethook_trampoline");
	out->notes_start = unique("__start_notes");
	out->notes_end = unique("__stop_notes");
	if (!ks_stop_cpuslocked || !ks_idle_task || !ks_find_module || !ks_put_task_stack ||
	    !ks_get_kprobe || !ks_within_kprobe_blacklist || !ks_text_mutex || !ks_kprobe_mutex ||
	    !ks_init_mm || !ks_stext || !ks_end)
		return -ENOENT;
	/* Both or neither: ftrace's lock and its records. */
	if (!!ks_ftrace_lock != !!(ks_rec_iter_start && ks_rec_iter_next && ks_rec_iter_record))
		return -ENOENT;
	if (!!ks_klp_mutex != !!ks_klp_patches)
		return -ENOENT;
	return 0;
}

void ksplice_helper_task_layout(struct ksplice_task_layout *out)
{
	static_assert(sizeof_field(struct task_struct, on_cpu) == 1 ||
		      sizeof_field(struct task_struct, on_cpu) == sizeof(int));
	static_assert(sizeof_field(struct task_struct, __state) == sizeof(int));
	static_assert(sizeof_field(struct task_struct, pid) == sizeof(int));
	out->tasks = offsetof(struct task_struct, tasks);
	out->thread_node = offsetof(struct task_struct, thread_node);
	out->signal = offsetof(struct task_struct, signal);
	out->thread_head = offsetof(struct signal_struct, thread_head);
	out->nvcsw = offsetof(struct task_struct, nvcsw);
	out->nivcsw = offsetof(struct task_struct, nivcsw);
	out->on_cpu = offsetof(struct task_struct, on_cpu);
	out->on_cpu_size = sizeof_field(struct task_struct, on_cpu);
	out->start_time = offsetof(struct task_struct, start_time);
	out->stack = offsetof(struct task_struct, stack);
	out->thread_sp = offsetof(struct task_struct, thread.sp);
	out->state = offsetof(struct task_struct, __state);
	out->pid = offsetof(struct task_struct, pid);
	out->comm = offsetof(struct task_struct, comm);
#ifdef CONFIG_TASKS_RCU
	out->rcu_tasks_exit_list = offsetof(struct task_struct, rcu_tasks_exit_list);
#else
	out->rcu_tasks_exit_list = ULONG_MAX;
#endif
}

struct task_struct *ksplice_helper_init_task(void)
{
	return &init_task;
}

const char *ksplice_helper_kernel_release(void)
{
	return init_utsname()->release;
}

int ksplice_helper_for_each_match(const char *name, int (*fn)(void *, unsigned long), void *data)
{
	return ks_each_match(fn, name, data);
}

/* A live module by name, with a reference taken; NULL if absent or not live. */
struct module *ksplice_helper_get_module(const char *name)
{
	struct module *mod;

	guard(rcu)();
	mod = ks_find_module(name);
	if (mod && (mod->state != MODULE_STATE_LIVE || !try_module_get(mod)))
		mod = NULL;
	return mod;
}

void ksplice_helper_module_put(struct module *mod)
{
	module_put(mod);
}

/* Another reference, for a caller that already holds one. */
void ksplice_helper_module_get(struct module *mod)
{
	__module_get(mod);
}

/* Address and size of a defined symbol of a module, from its kallsyms. */
unsigned long ksplice_helper_module_symbol(struct module *mod, const char *name, unsigned long *size)
{
	struct mod_kallsyms *kallsyms;
	unsigned int i;

	guard(rcu)();
	kallsyms = rcu_dereference(mod->kallsyms);
	for (i = 0; kallsyms && i < kallsyms->num_symtab; i++) {
		const Elf_Sym *sym = &kallsyms->symtab[i];

		if (sym->st_shndx != SHN_UNDEF && !strcmp(kallsyms->strtab + sym->st_name, name)) {
			*size = sym->st_size;
			return sym->st_value;
		}
	}
	return 0;
}

/*
 * The addresses of mod's defined symbols named name, at most cap of them
 * into out; returns how many there are. Under RCU, so nothing may sleep:
 * the caller counts first, then allocates.
 */
size_t ksplice_helper_module_matches(struct module *mod, const char *name, unsigned long *out, size_t cap)
{
	struct mod_kallsyms *kallsyms;
	size_t n = 0;
	unsigned int i;

	guard(rcu)();
	kallsyms = rcu_dereference(mod->kallsyms);
	for (i = 0; kallsyms && i < kallsyms->num_symtab; i++) {
		const Elf_Sym *sym = &kallsyms->symtab[i];

		if (sym->st_shndx == SHN_UNDEF || strcmp(kallsyms->strtab + sym->st_name, name))
			continue;
		if (n < cap)
			out[n] = sym->st_value;
		n++;
	}
	return n;
}

/* The state (MODULE_STATE_*) of the module called name, or -1 if none is. */
int ksplice_helper_module_state(const char *name)
{
	struct module *mod;

	guard(rcu)();
	mod = ks_find_module(name);
	return mod ? mod->state : -1;
}

const char *ksplice_helper_module_name(struct module *mod)
{
	return mod->name;
}

/* Rust (update.rs): a module is coming (its init has not run) or going. */
int ksplice_module_coming(struct module *mod);
void ksplice_module_going(struct module *mod);

static int module_event(struct notifier_block *nb, unsigned long state, void *data)
{
	if (state == MODULE_STATE_COMING)
		return notifier_from_errno(ksplice_module_coming(data));
	if (state == MODULE_STATE_GOING)
		ksplice_module_going(data);
	return NOTIFY_DONE;
}

/* Default priority: after jump labels and static calls fix the module's text. */
static struct notifier_block module_nb = { .notifier_call = module_event };

int ksplice_helper_register_module_notifier(void)
{
	return register_module_notifier(&module_nb);
}

void ksplice_helper_unregister_module_notifier(void)
{
	unregister_module_notifier(&module_nb);
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

/*
 * Whether addr lies in code of mod the kernel patches at run time (an
 * ftrace call site, a jump label, an inline static call), and the bounds
 * of that site: verify must not take those changes for tampering. The
 * caller holds text_mutex, under which none of them changes.
 */
bool ksplice_helper_module_patch_site(struct module *mod, unsigned long addr,
				      unsigned long *start, unsigned long *end)
{
	unsigned long c = 0, len = 0;
	unsigned int i;

#ifdef CONFIG_DYNAMIC_FTRACE
	for (i = 0; i < mod->num_ftrace_callsites && !len; i++)
		if (addr >= mod->ftrace_callsites[i] && addr < mod->ftrace_callsites[i] + MCOUNT_INSN_SIZE)
			c = mod->ftrace_callsites[i], len = MCOUNT_INSN_SIZE;
#endif
#ifdef CONFIG_JUMP_LABEL
	for (i = 0; i < mod->num_jump_entries && !len; i++) {
		unsigned long code = jump_entry_code(&mod->jump_entries[i]);
		/* A jump label is a 2-byte jmp/NOP or a 5-byte one (arch/x86/kernel/jump_label.c). */
		unsigned long size = (*(u8 *)code == 0xeb || *(u16 *)code == 0x9066) ? 2 : 5;

		if (addr >= code && addr < code + size)
			c = code, len = size;
	}
#endif
#ifdef CONFIG_HAVE_STATIC_CALL_INLINE
	for (i = 0; i < mod->num_static_call_sites && !len; i++) {
		struct static_call_site *site = &mod->static_call_sites[i];
		unsigned long call = (unsigned long)&site->addr + site->addr;

		if (addr >= call && addr < call + CALL_INSN_SIZE)
			c = call, len = CALL_INSN_SIZE;
	}
#endif
	*start = c;
	*end = c + len;
	return len != 0;
}

/* ---- locks, in the order kprobes, ftrace and the text patchers take them ---- */

void ksplice_helper_kprobe_lock(void) { mutex_lock(ks_kprobe_mutex); }
void ksplice_helper_kprobe_unlock(void) { mutex_unlock(ks_kprobe_mutex); }
void ksplice_helper_ftrace_lock(void) { if (ks_ftrace_lock) mutex_lock(ks_ftrace_lock); }
void ksplice_helper_ftrace_unlock(void) { if (ks_ftrace_lock) mutex_unlock(ks_ftrace_lock); }
void ksplice_helper_cpus_read_lock(void) { cpus_read_lock(); }
void ksplice_helper_cpus_read_unlock(void) { cpus_read_unlock(); }
void ksplice_helper_text_lock(void) { mutex_lock(ks_text_mutex); }
void ksplice_helper_text_unlock(void) { mutex_unlock(ks_text_mutex); }
void ksplice_helper_klp_lock(void) { if (ks_klp_mutex) mutex_lock(ks_klp_mutex); }
void ksplice_helper_klp_unlock(void) { if (ks_klp_mutex) mutex_unlock(ks_klp_mutex); }

/* ---- writing text ---- */

/*
 * The page behind a module (or vmalloc) address, or NULL. Unlike
 * vmalloc_to_page(), each changing level is read once: a module loading
 * beside us with ROX execmem splits the huge mapping its text shares with
 * ours (set_memory_rw), and a re-read entry can turn from a leaf into a
 * table in between. init_mm's lock keeps set_memory_rox()'s collapse from
 * freeing the table being read (arch/x86/mm/pat/set_memory.c).
 */
static struct page *module_page(unsigned long addr)
{
	unsigned long pfn = 0;
	pud_t *pudp, pud;
	pmd_t pmd;
	pte_t pte;

	mmap_read_lock(ks_init_mm);
	pudp = pud_offset(p4d_offset(pgd_offset(ks_init_mm, addr), addr), addr);
	pud = pudp_get(pudp);
	if (pud_leaf(pud)) {
		pfn = pud_pfn(pud) + ((addr & ~PUD_MASK) >> PAGE_SHIFT);
	} else if (pud_present(pud) && !pud_bad(pud)) {
		pmd = pmdp_get(pmd_offset(pudp, addr));
		if (pmd_leaf(pmd)) {
			pfn = pmd_pfn(pmd) + ((addr & ~PMD_MASK) >> PAGE_SHIFT);
		} else if (pmd_present(pmd) && !pmd_bad(pmd)) {
			pte = ptep_get(pte_offset_kernel(&pmd, addr));
			if (pte_present(pte))
				pfn = pte_pfn(pte);
		}
	}
	mmap_read_unlock(ks_init_mm);
	return pfn && pfn_valid(pfn) ? pfn_to_page(pfn) : NULL;
}

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

		if (is_vmalloc_or_module_addr((void *)page))
			pages[i] = module_page(page);
		else if (page >= ks_stext && page < ks_end && pfn_valid(__pa(page) >> PAGE_SHIFT))
			pages[i] = virt_to_page((void *)page);
		else
			pages[i] = NULL;
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

/* Runs fn on every online CPU at once; the caller holds cpus_read_lock. */
int ksplice_helper_stop_machine(int (*fn)(void *), void *data)
{
	return ks_stop_cpuslocked(fn, data, cpu_online_mask);
}

void ksplice_helper_sync_core(void)
{
	sync_core();
}

static void sync_this_cpu(void *unused)
{
	sync_core();
}

/* Every CPU serialises its instruction stream (sleeps; not in stop_machine). */
void ksplice_helper_sync_all_cpus(void)
{
	on_each_cpu(sync_this_cpu, NULL, 1);
}

/* Rust (trampoline.rs): the jmp target an int3 of ksplice stands for, or 0. */
unsigned long ksplice_int3_target(unsigned long addr);
NOKPROBE_SYMBOL(ksplice_int3_target);

/* While a trampoline is written, an NMI that runs it meets an int3 first. */
static int ksplice_die_notify(struct notifier_block *nb, unsigned long val, void *data)
{
	struct die_args *args = data;
	unsigned long target;

	if (val != DIE_INT3 || user_mode(args->regs))
		return NOTIFY_DONE;
	target = ksplice_int3_target(args->regs->ip - INT3_INSN_SIZE);
	if (!target)
		return NOTIFY_DONE;
	int3_emulate_jmp(args->regs, target);
	return NOTIFY_STOP;
}
NOKPROBE_SYMBOL(ksplice_die_notify);

static struct notifier_block ksplice_die_nb = { .notifier_call = ksplice_die_notify };

int ksplice_helper_register_int3(void) { return register_die_notifier(&ksplice_die_nb); }
void ksplice_helper_unregister_int3(void) { unregister_die_notifier(&ksplice_die_nb); }

/* ---- other text users (callers hold kprobe_mutex, ftrace_lock) ---- */

struct kprobe *ksplice_helper_get_kprobe(unsigned long addr)
{
	return ks_get_kprobe((void *)addr);
}

/*
 * The end of the bytes a probe at p->addr rewrites (more than one when
 * optimised), or 0 for a probe on an ftrace call site, which rewrites none.
 */
unsigned long ksplice_helper_kprobe_reach(struct kprobe *p)
{
	if (kprobe_ftrace(p))
		return 0;
	return (unsigned long)p->addr +
	       (kprobe_optimized(p) ? container_of(p, struct optimized_kprobe, kp)->optinsn.size : 1);
}

bool ksplice_helper_within_kprobe_blacklist(unsigned long addr)
{
	return ks_within_kprobe_blacklist(addr);
}

/*
 * The ftrace record flags of the call site at ip (FTRACE_FL_IPMODIFY and
 * FTRACE_FL_DIRECT are bits 26 and 24), or ULONG_MAX if ftrace has none.
 */
unsigned long ksplice_helper_ftrace_flags(unsigned long ip)
{
	struct ftrace_rec_iter *iter;

	if (!ks_rec_iter_start)
		return ULONG_MAX;
	for (iter = ks_rec_iter_start(); iter; iter = ks_rec_iter_next(iter))
		if (ks_rec_iter_record(iter)->ip == ip)
			return ks_rec_iter_record(iter)->flags;
	return ULONG_MAX;
}

/*
 * The livepatch module whose enabled patch redirects the function at
 * old_func: its name into buf. The caller holds klp_mutex.
 */
bool ksplice_helper_livepatch_owner(unsigned long old_func, char *buf, size_t len)
{
#ifdef CONFIG_LIVEPATCH
	struct klp_patch *patch;
	struct klp_object *obj;
	struct klp_func *func;

	if (!ks_klp_patches)
		return false;
	list_for_each_entry(patch, ks_klp_patches, list)
		klp_for_each_object(patch, obj)
			klp_for_each_func(obj, func)
				if ((unsigned long)func->old_func == old_func && patch->enabled) {
					strscpy(buf, patch->mod->name, len);
					return true;
				}
#endif
	return false;
}

unsigned long ksplice_helper_ftrace_direct(unsigned long ip)
{
	return ks_find_rec_direct ? ks_find_rec_direct(ip) : 0;
}

/* ---- CPUs, tasks and stacks ---- */

unsigned int ksplice_helper_num_online_cpus(void) { return num_online_cpus(); }
int ksplice_helper_smp_processor_id(void) { return raw_smp_processor_id(); }
struct task_struct *ksplice_helper_current(void) { return current; }
struct task_struct *ksplice_helper_idle_task(int cpu) { return ks_idle_task(cpu); }
unsigned long ksplice_helper_irq_save(void) { unsigned long f; local_irq_save(f); return f; }
void ksplice_helper_irq_restore(unsigned long flags) { local_irq_restore(flags); }
void ksplice_helper_rcu_read_lock(void) { rcu_read_lock(); }
void ksplice_helper_rcu_read_unlock(void) { rcu_read_unlock(); }
bool ksplice_helper_try_get_task_stack(struct task_struct *t) { return try_get_task_stack(t); }
void ksplice_helper_put_task_stack(struct task_struct *t) { ks_put_task_stack(t); }
unsigned long ksplice_helper_thread_size(void) { return THREAD_SIZE; }
bool ksplice_helper_fatal_signal_pending(void) { return fatal_signal_pending(current); }

/* The CPU after cpu (-1 starts) among the online or possible ones; -1 ends. */
int ksplice_helper_next_cpu(int cpu, bool online)
{
	unsigned int next = cpumask_next(cpu, online ? cpu_online_mask : cpu_possible_mask);

	return next < nr_cpu_ids ? next : -1;
}

void *ksplice_helper_per_cpu_ptr(unsigned long addr, int cpu)
{
	return per_cpu_ptr((void __percpu *)addr, cpu);
}

void ksplice_helper_unwind_start(void *state, struct task_struct *task)
{
	unwind_start(state, task, NULL, NULL);
}

bool ksplice_helper_unwind_done(void *state) { return unwind_done(state); }
bool ksplice_helper_unwind_error(void *state) { return unwind_error(state); }

/* Whether the unwind reached the user-mode registers at the stack's top. */
bool ksplice_helper_unwind_in_user_mode(void *state)
{
	struct pt_regs *regs = unwind_get_entry_regs(state, NULL);

	return regs && user_mode(regs);
}

/* ---- time ---- */

u64 ksplice_helper_ktime_ns(void) { return ktime_get_ns(); }
u64 ksplice_helper_real_ns(void) { return ktime_get_real_ns(); }

/* ---- shadow data: the API of <ksplice/patch.h>, implemented in shadow.rs ---- */

void *ksplice_shadow_get_rust(const void *obj, unsigned long id);
void *ksplice_shadow_alloc_rust(const void *obj, unsigned long id, size_t size, bool can_sleep,
				bool or_get);
void ksplice_shadow_free_rust(const void *obj, unsigned long id,
			      void (*dtor)(const void *obj, void *data));
void ksplice_shadow_free_all_rust(unsigned long id, void (*dtor)(const void *obj, void *data));

void *ksplice_shadow_get(const void *obj, unsigned long id)
{
	return ksplice_shadow_get_rust(obj, id);
}
EXPORT_SYMBOL_GPL(ksplice_shadow_get);

void *ksplice_shadow_alloc(const void *obj, unsigned long id, size_t size, gfp_t gfp)
{
	return ksplice_shadow_alloc_rust(obj, id, size, gfpflags_allow_blocking(gfp), false);
}
EXPORT_SYMBOL_GPL(ksplice_shadow_alloc);

void *ksplice_shadow_get_or_alloc(const void *obj, unsigned long id, size_t size, gfp_t gfp)
{
	return ksplice_shadow_alloc_rust(obj, id, size, gfpflags_allow_blocking(gfp), true);
}
EXPORT_SYMBOL_GPL(ksplice_shadow_get_or_alloc);

void ksplice_shadow_free(const void *obj, unsigned long id, void (*dtor)(const void *obj, void *data))
{
	ksplice_shadow_free_rust(obj, id, dtor);
}
EXPORT_SYMBOL_GPL(ksplice_shadow_free);

void ksplice_shadow_free_all(unsigned long id, void (*dtor)(const void *obj, void *data))
{
	ksplice_shadow_free_all_rust(id, dtor);
}
EXPORT_SYMBOL_GPL(ksplice_shadow_free_all);

/* Calls an update's hook: int (*)(void) for pre and check hooks, else void. */
int ksplice_helper_call_hook(unsigned long fn, bool returns_int)
{
	if (returns_int)
		return ((int (*)(void))fn)();
	((void (*)(void))fn)();
	return 0;
}
