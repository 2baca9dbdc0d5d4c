//! A minimal static BPF loader: an fentry program that counts calls of one
//! kernel function, for the VM test that tracing keeps working on patched
//! functions. No libbpf: the BTF id comes from /sys/kernel/btf/vmlinux and
//! the program is eleven hand-assembled instructions.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_PROG_LOAD: i64 = 5;
const BPF_RAW_TRACEPOINT_OPEN: i64 = 17;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_FENTRY: u32 = 24;
const BTF_KIND_FUNC: u32 = 12;

fn bpf_raw(cmd: i64, attr: &mut [u8]) -> Result<i64, String> {
    // SAFETY: `attr` is a writable buffer of the size passed; the kernel
    // reads and writes only within it.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    if rc < 0 {
        return Err(format!("bpf({cmd}): {}", nix::errno::Errno::last()));
    }
    Ok(rc)
}

/// A bpf() command that returns a new file descriptor.
fn bpf(cmd: i64, attr: &mut [u8]) -> Result<OwnedFd, String> {
    let fd = bpf_raw(cmd, attr)?;
    // SAFETY: These commands return a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The BTF type id of kernel function `name`.
pub fn btf_func_id(name: &str) -> Result<u32, String> {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| format!("vmlinux BTF: {e}"))?;
    let u32_at = |at: usize| -> Result<u32, String> {
        btf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "truncated BTF".to_owned())
    };
    if btf.get(..2) != Some(&[0x9f, 0xeb]) {
        return Err("not BTF".into());
    }
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let str_off = u32_at(16)? as usize;
    let types = hdr_len + type_off;
    let strings = hdr_len + str_off;
    let mut at = types;
    let mut id = 1u32;
    while at < types + type_len {
        let (name_off, info) = (u32_at(at)? as usize, u32_at(at + 4)?);
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        if kind == BTF_KIND_FUNC {
            let s = &btf[strings + name_off..];
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            if &s[..end] == name.as_bytes() {
                return Ok(id);
            }
        }
        at += 12
            + match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                _ => 0,
            };
        id += 1;
    }
    Err(format!("{name}: no such function in the kernel's BTF"))
}

/// An fentry program on one function, counting its calls in a map.
pub struct Fentry {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl Fentry {
    pub fn attach(function: &str) -> Result<Self, String> {
        let btf_id = btf_func_id(function)?;
        let mut attr = [0u8; 72];
        put(&mut attr, 0, &BPF_MAP_TYPE_ARRAY.to_le_bytes());
        put(&mut attr, 4, &4u32.to_le_bytes());
        put(&mut attr, 8, &8u32.to_le_bytes());
        put(&mut attr, 12, &1u32.to_le_bytes());
        let map = bpf(BPF_MAP_CREATE, &mut attr)?;
        let fd = map.as_raw_fd();
        // *(u32 *)(r10 - 4) = 0; r2 = r10; r2 += -4; r1 = map;
        // r0 = bpf_map_lookup_elem(r1, r2); if r0 == 0 goto out;
        // r1 = 1; lock *(u64 *)(r0 + 0) += r1; out: r0 = 0; exit
        let insns: [(u8, u8, i16, i32); 11] = [
            (0x62, 0x0a, -4, 0),
            (0xbf, 0xa2, 0, 0),
            (0x07, 0x02, 0, -4),
            (0x18, 0x11, 0, fd),
            (0x00, 0x00, 0, 0),
            (0x85, 0x00, 0, 1),
            (0x15, 0x00, 2, 0),
            (0xb7, 0x01, 0, 1),
            (0xdb, 0x10, 0, 0),
            (0xb7, 0x00, 0, 0),
            (0x95, 0x00, 0, 0),
        ];
        let mut code = Vec::new();
        for (op, regs, off, imm) in insns {
            code.push(op);
            code.push(regs);
            code.extend_from_slice(&off.to_le_bytes());
            code.extend_from_slice(&imm.to_le_bytes());
        }
        let license = b"GPL\0";
        let mut log = vec![0u8; 65536];
        let mut attr = [0u8; 160];
        put(&mut attr, 0, &BPF_PROG_TYPE_TRACING.to_le_bytes());
        put(&mut attr, 4, &(insns.len() as u32).to_le_bytes());
        put(&mut attr, 8, &(code.as_ptr() as u64).to_le_bytes());
        put(&mut attr, 16, &(license.as_ptr() as u64).to_le_bytes());
        put(&mut attr, 24, &1u32.to_le_bytes());
        put(&mut attr, 28, &(log.len() as u32).to_le_bytes());
        put(&mut attr, 32, &(log.as_mut_ptr() as u64).to_le_bytes());
        put(&mut attr, 48, b"ksplice_count");
        put(&mut attr, 68, &BPF_TRACE_FENTRY.to_le_bytes());
        put(&mut attr, 108, &btf_id.to_le_bytes());
        let prog = bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            format!("{e}: {}", String::from_utf8_lossy(&log[..end]))
        })?;
        let mut attr = [0u8; 24];
        put(&mut attr, 8, &(prog.as_raw_fd() as u32).to_le_bytes());
        let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)?;
        Ok(Self {
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// Calls counted so far.
    pub fn count(&self) -> Result<u64, String> {
        let key = 0u32;
        let mut value = 0u64;
        let mut attr = [0u8; 32];
        put(&mut attr, 0, &(self.map.as_raw_fd() as u32).to_le_bytes());
        put(&mut attr, 8, &(&key as *const u32 as u64).to_le_bytes());
        put(
            &mut attr,
            16,
            &(&mut value as *mut u64 as u64).to_le_bytes(),
        );
        bpf_raw(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
        Ok(value)
    }
}
