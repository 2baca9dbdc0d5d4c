//! Logic shared by the `ksplice.ko` core module and the userspace tools.
//!
//! The kernel build cannot use crates from a registry, so this crate uses
//! `core` only. `ksplice.ko` includes its module files by path (see
//! `kmod/ksplice_main.rs`); modules refer to each other through `super::`
//! so the same files compile in both places. Nothing here may panic on
//! input: in the kernel a panic is an oops.
//!
//! The `alloc` feature adds [`writer`], the payload encoder the tools use
//! (the kernel never writes payloads).
#![cfg_attr(not(test), no_std)]

pub mod notes;
#[cfg(any(test, feature = "alloc"))]
extern crate alloc;

pub mod payload;
pub mod reloc;
pub mod runpre;
pub mod uapi;
#[cfg(any(test, feature = "alloc"))]
pub mod writer;
pub mod x86;
