/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C glue in helpers.c, called from Rust (declared again in sys.rs):
 * one-line wrappers of macros, static inlines and unexported kernel
 * functions (found through kallsyms at load), as rust/helpers does.
 */
#ifndef KSPLICE_HELPERS_H
#define KSPLICE_HELPERS_H

#include <linux/types.h>

struct module;
struct task_struct;
struct kprobe;

/* Room for a struct unwind_state, which Rust allocates (checked in helpers.c). */
#define KSPLICE_UNWIND_STATE_SIZE 256

/* Addresses the Rust side needs; 0 when this kernel has no such symbol. */
struct ksplice_symbols {
	unsigned long rcu_tasks_percpu, rcu_tasks;
	unsigned long return_to_handler, kretprobe_trampoline, rethook_trampoline;
	unsigned long notes_start, notes_end;
};

/*
 * Where task_struct fields are, as this kernel's C compiler laid them out:
 * bindgen's layout of task_struct cannot be trusted (it sees some embedded
 * structs as empty), so the stack check reads fields at these offsets.
 */
struct ksplice_task_layout {
	unsigned long tasks, thread_node, signal, thread_head, nvcsw, nivcsw;
	unsigned long on_cpu, start_time, stack, thread_sp, state, pid, comm;
	unsigned long rcu_tasks_exit_list, on_cpu_size;
};

int ksplice_helper_init_kallsyms(struct ksplice_symbols *out);
void ksplice_helper_task_layout(struct ksplice_task_layout *out);
struct task_struct *ksplice_helper_init_task(void);
const char *ksplice_helper_kernel_release(void);

/* kallsyms */
int ksplice_helper_for_each_match(const char *name, int (*fn)(void *, unsigned long), void *data);
struct module *ksplice_helper_get_module(const char *name);
void ksplice_helper_module_put(struct module *mod);
void ksplice_helper_module_get(struct module *mod);
unsigned long ksplice_helper_module_symbol(struct module *mod, const char *name, unsigned long *size);
bool ksplice_helper_module_owns(struct module *mod, unsigned long addr, unsigned long len);
size_t ksplice_helper_module_matches(struct module *mod, const char *name, unsigned long *out, size_t cap);
int ksplice_helper_module_state(const char *name);
const char *ksplice_helper_module_name(struct module *mod);
int ksplice_helper_register_module_notifier(void);
void ksplice_helper_unregister_module_notifier(void);
bool ksplice_helper_module_patch_site(struct module *mod, unsigned long addr,
				      unsigned long *start, unsigned long *end);

/* Locks of the kernel's text patchers, taken in their order. */
void ksplice_helper_kprobe_lock(void);
void ksplice_helper_kprobe_unlock(void);
void ksplice_helper_ftrace_lock(void);
void ksplice_helper_ftrace_unlock(void);
void ksplice_helper_cpus_read_lock(void);
void ksplice_helper_cpus_read_unlock(void);
void ksplice_helper_text_lock(void);
void ksplice_helper_text_unlock(void);
void ksplice_helper_klp_lock(void);
void ksplice_helper_klp_unlock(void);

/* Writing text */
void *ksplice_helper_map(unsigned long addr, unsigned long len);
void ksplice_helper_unmap(void *alias);
int ksplice_helper_stop_machine(int (*fn)(void *), void *data);
void ksplice_helper_sync_core(void);
void ksplice_helper_sync_all_cpus(void);
int ksplice_helper_register_int3(void);
void ksplice_helper_unregister_int3(void);

/* Other text users */
struct kprobe *ksplice_helper_get_kprobe(unsigned long addr);
unsigned long ksplice_helper_kprobe_reach(struct kprobe *p);
bool ksplice_helper_within_kprobe_blacklist(unsigned long addr);
unsigned long ksplice_helper_ftrace_flags(unsigned long ip);
unsigned long ksplice_helper_ftrace_direct(unsigned long ip);
bool ksplice_helper_livepatch_owner(unsigned long old_func, char *buf, size_t len);

/* CPUs, tasks and stacks */
unsigned int ksplice_helper_num_online_cpus(void);
int ksplice_helper_next_cpu(int cpu, bool online);
int ksplice_helper_smp_processor_id(void);
void *ksplice_helper_per_cpu_ptr(unsigned long addr, int cpu);
struct task_struct *ksplice_helper_current(void);
struct task_struct *ksplice_helper_idle_task(int cpu);
unsigned long ksplice_helper_irq_save(void);
void ksplice_helper_irq_restore(unsigned long flags);
void ksplice_helper_rcu_read_lock(void);
void ksplice_helper_rcu_read_unlock(void);
bool ksplice_helper_try_get_task_stack(struct task_struct *t);
void ksplice_helper_put_task_stack(struct task_struct *t);
unsigned long ksplice_helper_thread_size(void);
void ksplice_helper_unwind_start(void *state, struct task_struct *task);
bool ksplice_helper_unwind_done(void *state);
bool ksplice_helper_unwind_error(void *state);
bool ksplice_helper_unwind_in_user_mode(void *state);
bool ksplice_helper_fatal_signal_pending(void);

/* Hooks */
int ksplice_helper_call_hook(unsigned long fn, bool returns_int);

/* Time */
u64 ksplice_helper_ktime_ns(void);
u64 ksplice_helper_real_ns(void);

#endif
