// SPDX-License-Identifier: GPL-2.0
/*
 * The loadable module the module-patching VM tests patch
 * (tests/patches/mod-target.patch). scripts/test-kernel builds it in the
 * test kernel's tree as samples/ksplice/, so ksplice-create finds its
 * objects the way it finds any distro module's.
 *
 * /proc/ksplice_target         reads what ksplice_target_answer() says.
 * /proc/ksplice_target_hold    write "hold": the writer sleeps inside
 *                              ksplice_target_hold() until "release" is
 *                              written; "khold": a kthread (ksplice-khold)
 *                              does; reads "holding N result R", R being
 *                              what the last ksplice_target_hold() returned.
 */
#include <linux/atomic.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

static DECLARE_WAIT_QUEUE_HEAD(hold_wait);
static atomic_t holding = ATOMIC_INIT(0);
static bool released;
static int last_result = -1;
static struct task_struct *kholder;
static DEFINE_MUTEX(kholder_lock);

static noinline const char *ksplice_target_answer(void)
{
	return "unpatched";
}

static noinline int ksplice_target_hold(void)
{
	atomic_inc(&holding);
	wait_event_interruptible(hold_wait, READ_ONCE(released));
	atomic_dec(&holding);
	return 0;
}

static int khold(void *unused)
{
	WRITE_ONCE(last_result, ksplice_target_hold());
	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!kthread_should_stop())
			schedule();
		__set_current_state(TASK_RUNNING);
	}
	return 0;
}

static void release_all(void)
{
	WRITE_ONCE(released, true);
	wake_up_all(&hold_wait);
	mutex_lock(&kholder_lock);
	if (kholder) {
		kthread_stop(kholder);
		kholder = NULL;
	}
	mutex_unlock(&kholder_lock);
}

static int start_kholder(void)
{
	int err = 0;

	mutex_lock(&kholder_lock);
	if (kholder) {
		err = -EBUSY;
	} else {
		WRITE_ONCE(released, false);
		kholder = kthread_run(khold, NULL, "ksplice-khold");
		if (IS_ERR(kholder)) {
			err = PTR_ERR(kholder);
			kholder = NULL;
		}
	}
	mutex_unlock(&kholder_lock);
	return err;
}

static int answer_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s\n", ksplice_target_answer());
	return 0;
}

static int hold_show(struct seq_file *m, void *v)
{
	seq_printf(m, "holding %d result %d\n", atomic_read(&holding), READ_ONCE(last_result));
	return 0;
}

static int hold_open(struct inode *inode, struct file *file)
{
	return single_open(file, hold_show, NULL);
}

static ssize_t hold_write(struct file *file, const char __user *buf, size_t len, loff_t *pos)
{
	char word[8] = {};

	if (copy_from_user(word, buf, min(len, sizeof(word) - 1)))
		return -EFAULT;
	if (!strncmp(word, "hold", 4)) {
		WRITE_ONCE(released, false);
		WRITE_ONCE(last_result, ksplice_target_hold());
	} else if (!strncmp(word, "khold", 5)) {
		int err = start_kholder();

		if (err)
			return err;
	} else if (!strncmp(word, "release", 7)) {
		release_all();
	} else {
		return -EINVAL;
	}
	return len;
}

static const struct proc_ops hold_ops = {
	.proc_open = hold_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = hold_write,
};

static int __init target_init(void)
{
	if (!proc_create_single("ksplice_target", 0444, NULL, answer_show))
		return -ENOMEM;
	if (!proc_create("ksplice_target_hold", 0644, NULL, &hold_ops)) {
		remove_proc_entry("ksplice_target", NULL);
		return -ENOMEM;
	}
	return 0;
}

static void __exit target_exit(void)
{
	release_all();
	remove_proc_entry("ksplice_target_hold", NULL);
	remove_proc_entry("ksplice_target", NULL);
}

module_init(target_init);
module_exit(target_exit);
MODULE_DESCRIPTION("Target of ksplice's module-patching tests");
MODULE_LICENSE("GPL");
