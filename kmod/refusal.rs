// SPDX-License-Identifier: GPL-2.0
//! Why an operation was refused: an abort code and what it concerns.
//!
//! Every stage returns `Result<_, Refusal>`; the ioctl shim turns a
//! refusal into the abort code and detail of the result struct. Refused
//! means nothing was changed.

use kernel::prelude::*;

use crate::uapi::{self, Abort};

/// A refusal: the abort code and a short text naming the function, task,
/// symbol or probe involved (at most `DETAIL_LEN - 1` bytes).
pub(crate) struct Refusal {
    pub(crate) abort: Abort,
    detail: [u8; uapi::DETAIL_LEN],
    len: usize,
}

impl Refusal {
    /// A refusal with a formatted detail (cut to fit; never allocates).
    pub(crate) fn new(abort: Abort, args: core::fmt::Arguments<'_>) -> Self {
        let mut r = Self {
            abort,
            detail: [0; uapi::DETAIL_LEN],
            len: 0,
        };
        let _ = core::fmt::write(&mut r, args);
        r
    }

    /// The detail text.
    pub(crate) fn detail(&self) -> &[u8] {
        self.detail.get(..self.len).unwrap_or(&[])
    }
}

impl core::fmt::Write for Refusal {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = uapi::DETAIL_LEN.saturating_sub(1).saturating_sub(self.len);
        for (dst, &src) in self.detail.iter_mut().skip(self.len).zip(s.as_bytes().iter().take(room)) {
            *dst = src;
        }
        self.len += s.len().min(room);
        Ok(())
    }
}

impl From<kernel::alloc::AllocError> for Refusal {
    fn from(_: kernel::alloc::AllocError) -> Self {
        Self::new(Abort::OutOfMemory, format_args!("a kernel allocation failed"))
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        if e == ENOMEM {
            Self::from(kernel::alloc::AllocError)
        } else {
            Self::new(Abort::KernelError, format_args!("errno {}", -e.to_errno()))
        }
    }
}

/// Returns early with a refusal: `refuse!(Abort::NoMatch, "{name}: ...")`.
macro_rules! refuse {
    ($abort:expr, $($arg:tt)*) => {
        return Err($crate::refusal::Refusal::new($abort, format_args!($($arg)*)))
    };
}
pub(crate) use refuse;
