// SPDX-License-Identifier: GPL-2.0
/*
 * For the exiting-task test: parks a thread named "ksplice-exiter" in the
 * tail of do_exit, after exit_notify() has taken it off the task list but
 * while it can still sleep, which is where ksplice's task walk alone
 * cannot see it. An IPMODIFY ftrace_ops redirects that thread's call of
 * exit_task_stack_account() to park_exiting(), which sleeps until
 * "release" is written (and skips the stack accounting of that one task).
 *
 * /sys/module/ksplice_exit_park/parameters/parked: threads parked so far.
 * Writing anything to .../release lets them go.
 */
#include <linux/completion.h>
#include <linux/ftrace.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/string.h>

static DECLARE_COMPLETION(released);
static atomic_t parked = ATOMIC_INIT(0);

static noinline void park_exiting(struct task_struct *tsk)
{
	atomic_inc(&parked);
	wait_for_completion(&released);
}

static void notrace park_handler(unsigned long ip, unsigned long parent_ip,
				 struct ftrace_ops *ops, struct ftrace_regs *fregs)
{
	if (!strcmp(current->comm, "ksplice-exiter"))
		ftrace_regs_set_instruction_pointer(fregs, (unsigned long)park_exiting);
}

static struct ftrace_ops park_ops = {
	.func = park_handler,
	.flags = FTRACE_OPS_FL_IPMODIFY,
};

static int parked_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&parked));
}

static int release_set(const char *val, const struct kernel_param *kp)
{
	complete_all(&released);
	return 0;
}

static const struct kernel_param_ops parked_ops = { .get = parked_get };
static const struct kernel_param_ops release_ops = { .set = release_set };
module_param_cb(parked, &parked_ops, NULL, 0444);
module_param_cb(release, &release_ops, NULL, 0200);

static int __init park_init(void)
{
	int ret = ftrace_set_filter(&park_ops, "exit_task_stack_account", strlen("exit_task_stack_account"), 0);

	return ret ?: register_ftrace_function(&park_ops);
}

static void __exit park_exit(void)
{
	complete_all(&released);
	unregister_ftrace_function(&park_ops);
}

module_init(park_init);
module_exit(park_exit);
MODULE_DESCRIPTION("ksplice test: park an exiting thread off the task list");
MODULE_LICENSE("GPL");
