/* SPDX-License-Identifier: GPL-2.0 */
/*
 * <ksplice/patch.h>: what a patch may use to help ksplice apply it safely.
 * ksplice-create makes this header available to the patched sources; it
 * is not part of the kernel.
 *
 * Hooks. A patch declares functions that ksplice.ko calls at named points
 * of an apply or an undo, in the order they are declared:
 *
 *   ksplice_pre_apply(fn)    int fn(void), process context, before the
 *                            stop; nonzero refuses the apply (hook_failed)
 *   ksplice_check_apply(fn)  int fn(void), inside stop_machine (every CPU
 *                            stopped, interrupts off: no sleeping, no
 *                            allocation), after the stack check; nonzero
 *                            refuses, and nothing has changed
 *   ksplice_apply(fn)        void fn(void), inside stop_machine after every
 *                            check, just before the trampolines: cannot fail
 *   ksplice_post_apply(fn)   void fn(void), process context, once applied
 *   ksplice_fail_apply(fn)   void fn(void), process context, when an apply
 *                            is refused after the pre_apply hooks ran
 *
 * and the same five for undo (ksplice_pre_undo, ...). A changed initial
 * value of a variable is refused unless the patch has both an apply hook
 * (which writes the new value) and an undo hook (which restores the old).
 *
 * Shadow data. A fix that adds a member to a struct cannot change live
 * objects; it keeps the member as shadow data instead: memory attached to
 * an object by (object, id), zeroed when allocated, safe to use from any
 * context. ksplice.ko exports the functions below.
 */
#ifndef _KSPLICE_PATCH_H
#define _KSPLICE_PATCH_H

#include <linux/compiler.h>
#include <linux/gfp.h>
#include <linux/types.h>

#define __ksplice_hook(kind, type, fn)						\
	static type (*const __ksplice_hook_##kind##_##fn)(void)		\
	__used __section(".ksplice.hooks." #kind) = fn

#define ksplice_pre_apply(fn)	__ksplice_hook(pre_apply, int, fn)
#define ksplice_check_apply(fn)	__ksplice_hook(check_apply, int, fn)
#define ksplice_apply(fn)	__ksplice_hook(apply, void, fn)
#define ksplice_post_apply(fn)	__ksplice_hook(post_apply, void, fn)
#define ksplice_fail_apply(fn)	__ksplice_hook(fail_apply, void, fn)
#define ksplice_pre_undo(fn)	__ksplice_hook(pre_undo, int, fn)
#define ksplice_check_undo(fn)	__ksplice_hook(check_undo, int, fn)
#define ksplice_undo(fn)	__ksplice_hook(undo, void, fn)
#define ksplice_post_undo(fn)	__ksplice_hook(post_undo, void, fn)
#define ksplice_fail_undo(fn)	__ksplice_hook(fail_undo, void, fn)

/* The shadow data (obj, id) has, or NULL. */
void *ksplice_shadow_get(const void *obj, unsigned long id);
/* Attaches size zeroed bytes to (obj, id); NULL if it has some or on ENOMEM. */
void *ksplice_shadow_alloc(const void *obj, unsigned long id, size_t size, gfp_t gfp);
/* The shadow data of (obj, id), attached (zeroed) if it had none. */
void *ksplice_shadow_get_or_alloc(const void *obj, unsigned long id, size_t size, gfp_t gfp);
/* Detaches and frees (obj, id)'s shadow data, calling dtor first if given. */
void ksplice_shadow_free(const void *obj, unsigned long id,
			 void (*dtor)(const void *obj, void *data));
/* The same for every object's shadow data of this id. */
void ksplice_shadow_free_all(unsigned long id, void (*dtor)(const void *obj, void *data));

#endif
