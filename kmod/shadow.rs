// SPDX-License-Identifier: GPL-2.0
//! Shadow data: memory an update attaches to a live object, keyed by
//! (object pointer, id), for the members a fix would add to a struct whose
//! live instances cannot grow (the API is in `<ksplice/patch.h>`; helpers.c
//! exports it).
//!
//! One table of hashed chains under an IRQ-disabling spinlock, so any
//! context may use it; memory is allocated and freed outside the lock.
//! Returned data stays valid until its owner frees it.

use core::ffi::c_void;

use kernel::prelude::*;

const BUCKETS: usize = 64;

struct Node {
    obj: usize,
    id: usize,
    data: KVec<u8>,
    next: Option<KBox<Node>>,
}

/// The table; `SHADOW` holds it.
pub(crate) struct Shadows {
    buckets: [Option<KBox<Node>>; BUCKETS],
}

impl Shadows {
    pub(crate) const fn new() -> Self {
        Self {
            buckets: [const { None }; BUCKETS],
        }
    }

    fn bucket(obj: usize, id: usize) -> usize {
        ((obj >> 4) ^ id.wrapping_mul(0x9e37_79b9)) % BUCKETS
    }

    fn find(&mut self, obj: usize, id: usize) -> Option<*mut c_void> {
        let mut n = self.buckets.get_mut(Self::bucket(obj, id))?.as_deref_mut();
        while let Some(node) = n {
            if node.obj == obj && node.id == id {
                return Some(node.data.as_mut_ptr().cast());
            }
            n = node.next.as_deref_mut();
        }
        None
    }

    fn insert(&mut self, mut node: KBox<Node>) -> *mut c_void {
        let data = node.data.as_mut_ptr().cast();
        if let Some(head) = self.buckets.get_mut(Self::bucket(node.obj, node.id)) {
            node.next = head.take();
            *head = Some(node);
        }
        data
    }

    /// Unlinks every node `keep` rejects into one chain, which the caller
    /// drops outside the lock.
    fn take(&mut self, mut keep: impl FnMut(&Node) -> bool) -> Option<KBox<Node>> {
        let mut taken: Option<KBox<Node>> = None;
        for head in self.buckets.iter_mut() {
            let mut chain = head.take();
            while let Some(mut node) = chain {
                chain = node.next.take();
                let slot = if keep(&node) { &mut *head } else { &mut taken };
                node.next = slot.take();
                *slot = Some(node);
            }
        }
        taken
    }
}

kernel::sync::global_lock! {
    // SAFETY: Initialised in module init before any update can run.
    pub(crate) unsafe(uninit) static SHADOW: SpinLock<Shadows> = Shadows::new();
}

/// Runs `f` on the table under its lock, with interrupts off: patched code
/// may call the shadow API from interrupt context.
fn with_table<R>(f: impl FnOnce(&mut Shadows) -> R) -> R {
    let _irqs = crate::sys::IrqsOff::new();
    let mut table = SHADOW.lock();
    f(&mut table)
}

fn new_node(obj: usize, id: usize, size: usize, can_sleep: bool) -> Option<KBox<Node>> {
    let flags = if can_sleep { GFP_KERNEL } else { GFP_ATOMIC };
    let data = KVec::from_elem(0u8, size.max(1), flags).ok()?;
    KBox::new(
        Node {
            obj,
            id,
            data,
            next: None,
        },
        flags,
    )
    .ok()
}

#[no_mangle]
extern "C" fn ksplice_shadow_get_rust(obj: *const c_void, id: usize) -> *mut c_void {
    with_table(|t| t.find(obj as usize, id)).unwrap_or(core::ptr::null_mut())
}

#[no_mangle]
extern "C" fn ksplice_shadow_alloc_rust(
    obj: *const c_void,
    id: usize,
    size: usize,
    can_sleep: bool,
    or_get: bool,
) -> *mut c_void {
    let obj = obj as usize;
    if let Some(data) = with_table(|t| t.find(obj, id)) {
        return if or_get { data } else { core::ptr::null_mut() };
    }
    let Some(node) = new_node(obj, id, size, can_sleep) else {
        return core::ptr::null_mut();
    };
    // Another CPU may have attached one meanwhile; then `node` is dropped
    // here, outside the lock.
    match with_table(|t| match t.find(obj, id) {
        Some(data) => Err((data, node)),
        None => Ok(t.insert(node)),
    }) {
        Ok(data) => data,
        Err((data, _node)) => if or_get { data } else { core::ptr::null_mut() },
    }
}

type Dtor = Option<unsafe extern "C" fn(*const c_void, *mut c_void)>;

fn destroy(mut chain: Option<KBox<Node>>, dtor: Dtor) {
    while let Some(mut node) = chain {
        chain = node.next.take();
        if let Some(dtor) = dtor {
            // SAFETY: The update that attached the data gave this destructor
            // for it; the node is unlinked, so nobody else can reach it.
            unsafe { dtor(node.obj as *const c_void, node.data.as_mut_ptr().cast()) };
        }
    }
}

#[no_mangle]
extern "C" fn ksplice_shadow_free_rust(obj: *const c_void, id: usize, dtor: Dtor) {
    let obj = obj as usize;
    let taken = with_table(|t| t.take(|n| n.obj != obj || n.id != id));
    destroy(taken, dtor);
}

#[no_mangle]
extern "C" fn ksplice_shadow_free_all_rust(id: usize, dtor: Dtor) {
    let taken = with_table(|t| t.take(|n| n.id != id));
    destroy(taken, dtor);
}

/// Frees everything (module unload: no update can use the API any more).
pub(crate) fn free_everything() {
    let taken = with_table(|t| t.take(|_| false));
    destroy(taken, None);
}
