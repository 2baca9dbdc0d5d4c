/* SPDX-License-Identifier: GPL-2.0 */
/* Prototypes of the C glue in helpers.c, called from Rust. */
#ifndef KSPLICE_HELPERS_H
#define KSPLICE_HELPERS_H

const char *ksplice_helper_kernel_release(void);

#endif
