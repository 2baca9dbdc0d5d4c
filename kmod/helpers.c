// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for ksplice.ko: only what Rust cannot reach (macros, static
 * inlines, opaque structs), one small function each, as rust/helpers does.
 */
#include <linux/utsname.h>

#include "helpers.h"

/* The release string of the running kernel; uts_namespace is opaque to bindgen. */
const char *ksplice_helper_kernel_release(void)
{
	return init_utsname()->release;
}
