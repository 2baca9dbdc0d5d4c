//! Helper for the VM tests: things busybox cannot do.
//!
//! - `vmtool open-errno PATH`: opens PATH read-write and issues INFO; prints
//!   `ok` or the errno name (e.g. `EPERM`). Always exits 0 when it ran.
//! - `vmtool ioctl-garbage PATH`: sends unknown ioctl numbers and bad
//!   pointers; exits 1 unless every one gets the expected errno.
//! - `vmtool apply-payload UPDATE.ko MUTATION`: sends APPLY for the
//!   update's module with its payload mutated (`none`, `truncate:N`,
//!   `flip:SEED`, `garbage:SEED`, `release:TEXT`, `buildid`, `len:N`,
//!   `module:NAME`); prints `abort=CODE` or `errno=NAME`.
//! - `vmtool empty-stop`: prints the ns of an empty stop_machine (EMPTY_STOP).
//! - `vmtool spawn-threads N READY_FILE`: starts N sleeping threads, creates
//!   READY_FILE, and sleeps until killed (for benchmarks).
//! - `vmtool capget-v1`: calls capget with the legacy 32-bit header version,
//!   which makes the kernel warn (once).
//! - `vmtool getppid-loop STOP_FILE SPIN`: calls getppid() in a loop until
//!   STOP_FILE exists, spinning SPIN iterations in userspace between calls
//!   (so a stop_machine does not always catch the caller inside it); prints
//!   `calls old new bad`, where old is the real parent pid, new the one
//!   tests/patches/a-global-function returns (old + 1000000) and bad
//!   anything else. Exits 1 if any was bad.
//! - `vmtool cycle UPDATE.ko N`: loads UPDATE.ko and applies and undoes it
//!   N times through /dev/ksplice (as ksplice-apply and ksplice-undo would,
//!   without a process per step), retrying on code_busy; prints the number
//!   of cycles and of busy retries. Exits 1 on any other refusal.
//! - `vmtool bpf-fentry FUNCTION READY_FILE STOP_FILE`: attaches a BPF
//!   fentry program that counts FUNCTION's calls, creates READY_FILE, waits
//!   for STOP_FILE, prints the count and detaches.
//! - `vmtool exit-thread NAME`: starts a thread named NAME that exits at
//!   once, and sleeps until killed (the process stays).
//! - `vmtool fail-nth-sweep UPDATE.ko`: fault injection over every
//!   allocation of apply, then of undo, of tests/patches/a-global-function:
//!   for N = 1, 2, ... the N-th allocation fails (/proc/thread-self/fail-nth)
//!   until an operation runs without reaching it. After each, the kernel
//!   must be unchanged (refused) or changed completely (succeeded), as seen
//!   by LIST, VERIFY and getppid(). Prints what it saw; exits 1 otherwise.
//! - `vmtool as-nobody CMD [ARG]...`: runs CMD as uid/gid 65534 with no
//!   supplementary groups (and so no capabilities).
//! - `vmtool without-cap CMD [ARG]...`: runs CMD as root, but with
//!   CAP_SYS_MODULE removed from the bounding set, so exec drops it.
//! - `vmtool store-for-other-build UPDATE.ko STATE_DIR`: stores, as
//!   `ksplice-apply --persist` would have on another build of this kernel
//!   release, a copy of UPDATE.ko whose payload names another vmlinux build
//!   id; prints the stored path.
//! - `vmtool send-break TTY DECISECONDS`: a timed break on TTY (TCSBRKP);
//!   prints the result (`ok` or the errno name) and how long it took, in ms.

mod bpf;

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

use ksplice_core::uapi;
use nix::errno::Errno;

fn raw_ioctl(fd: i32, request: u32, arg: u64) -> Result<i32, Errno> {
    // SAFETY: This helper exists to pass arbitrary arguments to the kernel;
    // the kernel must validate them. Nothing in this process is written,
    // because every pointer passed is outside its address space or null,
    // or points to a buffer owned by the caller that is large enough.
    let rc = unsafe { nix::libc::ioctl(fd, request as _, arg) };
    Errno::result(rc)
}

/// `TCSBRKP`: a POSIX tcsendbreak() of `arg` tenths of a second.
const TCSBRKP: u32 = 0x5425;

fn send_break(tty: &str, deciseconds: u64) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open(tty)
        .map_err(|e| format!("{tty}: {e}"))?;
    let start = std::time::Instant::now();
    let result = match raw_ioctl(file.as_raw_fd(), TCSBRKP, deciseconds) {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    Ok(format!("{result} {}", start.elapsed().as_millis()))
}

fn open_errno(path: &str) -> String {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) => return format!("{:?}", Errno::from_raw(e.raw_os_error().unwrap_or(0))),
    };
    let mut info = uapi::Info::zeroed();
    match raw_ioctl(file.as_raw_fd(), uapi::IOC_INFO, &mut info as *mut _ as u64) {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}"),
    }
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn ioctl_garbage(path: &str) -> Result<usize, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    let fd = file.as_raw_fd();
    let checks = std::cell::Cell::new(0usize);
    let expect = |what: &str, request: u32, arg: u64, want: &[Errno]| -> Result<(), String> {
        checks.set(checks.get() + 1);
        match raw_ioctl(fd, request, arg) {
            Err(e) if want.contains(&e) => Ok(()),
            other => Err(format!(
                "{what}: request {request:#x} arg {arg:#x} gave {other:?}, want {want:?}"
            )),
        }
    };
    let bad_pointers = [
        0u64,
        1,
        0x0dea_dbee_f000,
        0xffff_ffff_8100_0000,
        u64::MAX,
        0x7fff_ffff_fff8,
    ];
    for &ptr in &bad_pointers {
        expect(
            "INFO to a bad pointer",
            uapi::IOC_INFO,
            ptr,
            &[Errno::EFAULT],
        )?;
        expect(
            "LIST from a bad pointer",
            uapi::IOC_LIST,
            ptr,
            &[Errno::EFAULT],
        )?;
    }
    // LIST whose entries array is a bad pointer, with room for records.
    for &ptr in &bad_pointers {
        let mut request = uapi::ListRequest {
            entries: ptr,
            capacity: 1 << 20,
            total: 0,
        };
        checks.set(checks.get() + 1);
        match raw_ioctl(fd, uapi::IOC_LIST, &mut request as *mut _ as u64) {
            // With no updates there is nothing to write through `entries`.
            Ok(_) if request.total == 0 => {}
            Err(Errno::EFAULT | Errno::EINVAL) => {}
            other => return Err(format!("LIST to entries {ptr:#x} gave {other:?}")),
        }
    }
    // The right command numbers with the wrong encoded size or direction.
    let ty = uapi::IOCTL_TYPE << 8;
    for request in [
        ty | 0x01,
        ty | 0x02,
        0x8000_0000 | ty | 0x01,
        0xc000_0000 | (15 << 16) | ty | 0x02,
    ] {
        expect("valid nr with wrong size", request, 0, &[Errno::ENOTTY])?;
    }
    let mut rng = XorShift(0x5eed_1234_abcd_ef01);
    for _ in 0..20_000 {
        let request = rng.next() as u32;
        if request == uapi::IOC_INFO || request == uapi::IOC_LIST {
            continue;
        }
        let arg = match rng.next() % 3 {
            0 => 0,
            1 => rng.next(),
            _ => bad_pointers[(rng.next() % bad_pointers.len() as u64) as usize],
        };
        expect("random request", request, arg, &[Errno::ENOTTY])?;
    }
    Ok(checks.get())
}

fn apply_payload(ko: &str, mutation: &str) -> Result<String, String> {
    let update =
        ksplice::module::UpdateFile::read(std::path::Path::new(ko)).map_err(|e| e.to_string())?;
    let mut payload = update.payload.clone();
    let mut module = update.module_name.clone();
    let mut claimed_len = None;
    let (what, arg) = mutation.split_once(':').unwrap_or((mutation, ""));
    let number = || {
        arg.parse::<u64>()
            .map_err(|_| format!("bad number in {mutation}"))
    };
    match what {
        "none" => {}
        "truncate" => payload.truncate(number()? as usize),
        "flip" => {
            let mut rng = XorShift(number()? | 1);
            for _ in 0..8 {
                let at = (rng.next() as usize) % payload.len();
                payload[at] ^= 1 << (rng.next() % 8);
            }
        }
        "garbage" => {
            let mut rng = XorShift(number()? | 1);
            payload.iter_mut().for_each(|b| *b = rng.next() as u8);
        }
        // The release and build id sit at fixed header offsets.
        "release" => {
            let field = &mut payload[56..56 + ksplice_core::uapi::RELEASE_LEN];
            field.fill(0);
            field[..arg.len()].copy_from_slice(arg.as_bytes());
        }
        "buildid" => payload[128] ^= 0xff,
        "len" => claimed_len = Some(number()? as u32),
        "module" => module = arg.to_owned(),
        _ => return Err(format!("unknown mutation {mutation}")),
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(uapi::DEVICE_PATH)
        .map_err(|e| e.to_string())?;
    let mut request = uapi::ApplyRequest {
        payload: payload.as_ptr() as u64,
        payload_len: claimed_len.unwrap_or(payload.len() as u32),
        tries: 1,
        retry_ms: 1,
        flags: 0,
        module: [0; uapi::MODULE_NAME_LEN],
        result: uapi::OpResult::zeroed(),
    };
    for (d, s) in request
        .module
        .iter_mut()
        .zip(module.bytes().take(uapi::MODULE_NAME_LEN - 1))
    {
        *d = s;
    }
    match raw_ioctl(
        file.as_raw_fd(),
        uapi::IOC_APPLY,
        &mut request as *mut _ as u64,
    ) {
        Ok(_) => {
            let abort =
                uapi::Abort::from_u32(request.result.abort).map_or("unknown", uapi::Abort::as_str);
            Ok(format!("abort={abort} {}", request.result.detail_str()))
        }
        Err(e) => Ok(format!("errno={e:?}")),
    }
}

fn empty_stop() -> Result<u64, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(uapi::DEVICE_PATH)
        .map_err(|e| e.to_string())?;
    let mut ns = 0u64;
    raw_ioctl(
        file.as_raw_fd(),
        uapi::IOC_EMPTY_STOP,
        &mut ns as *mut u64 as u64,
    )
    .map_err(|e| format!("{e:?}"))?;
    Ok(ns)
}

fn spawn_threads(n: usize, ready: &str) -> Result<(), String> {
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let h = std::thread::Builder::new()
            .stack_size(16 << 10)
            .spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            })
            .map_err(|e| format!("thread {i}: {e}"))?;
        handles.push(h);
    }
    std::fs::write(ready, n.to_string()).map_err(|e| e.to_string())?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn capget_v1() -> Result<(), String> {
    const LINUX_CAPABILITY_VERSION_1: u32 = 0x1998_0330;
    let mut header = [LINUX_CAPABILITY_VERSION_1, 0u32];
    let mut data = [0u32; 6];
    // SAFETY: capget writes at most one 12-byte record for version 1 into
    // `data` (24 bytes) and reads the 8-byte header.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_capget,
            header.as_mut_ptr(),
            data.as_mut_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::last().to_string())
    }
}

fn exec(argv: &[String]) -> ExitCode {
    let cargs: Result<Vec<std::ffi::CString>, _> = argv
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect();
    let Ok(cargs) = cargs else {
        eprintln!("vmtool: argument contains a NUL byte");
        return ExitCode::from(2);
    };
    let Some(prog) = cargs.first() else {
        eprintln!("vmtool: no command given");
        return ExitCode::from(2);
    };
    let err = nix::unistd::execvp(prog, &cargs).unwrap_err();
    eprintln!("vmtool: cannot run {}: {err}", argv[0]);
    ExitCode::from(127)
}

fn getppid_loop(stop: &str, spin: u64) -> ExitCode {
    let real = nix::unistd::getppid().as_raw();
    let (mut calls, mut old, mut new, mut bad) = (0u64, 0u64, 0u64, 0u64);
    loop {
        for _ in 0..256 {
            let mut x = 0u64;
            for i in 0..spin {
                x = std::hint::black_box(x.wrapping_add(i));
            }
            // SAFETY: getppid has no arguments and cannot fail; the raw
            // syscall bypasses any libc caching.
            let got = unsafe { nix::libc::syscall(nix::libc::SYS_getppid) } as i32;
            calls += 1;
            if got == real {
                old += 1;
            } else if got == real + 1_000_000 {
                new += 1;
            } else {
                bad += 1;
            }
        }
        if std::path::Path::new(stop).exists() {
            break;
        }
    }
    println!("{calls} {old} {new} {bad}");
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cycle(ko: &str, n: u32) -> Result<String, String> {
    use ksplice::device::{Device, Retry};
    use ksplice_core::uapi::Abort;
    let update =
        ksplice::module::UpdateFile::read(std::path::Path::new(ko)).map_err(|e| e.to_string())?;
    ksplice::module::load(&update.path).map_err(|e| e.to_string())?;
    let device = Device::open().map_err(|e| e.to_string())?;
    let retry = Retry {
        tries: 50,
        retry_ms: 10,
    };
    let mut busy = 0u32;
    for i in 1..=n {
        for (what, op) in [("apply", true), ("undo", false)] {
            loop {
                let result = if op {
                    device.apply(&update.payload, &update.module_name, retry)
                } else {
                    device.undo(&update.id, retry)
                }
                .map_err(|e| e.to_string())?;
                match Abort::from_u32(result.abort) {
                    Some(Abort::None) => break,
                    Some(Abort::CodeBusy) => busy += 1,
                    _ => {
                        return Err(format!(
                            "{what} #{i}: abort {}: {}",
                            result.abort,
                            result.detail_str()
                        ))
                    }
                }
            }
        }
    }
    Ok(format!("{n} cycles, {busy} busy retries"))
}

fn bpf_fentry(function: &str, ready: &str, stop: &str) -> Result<u64, String> {
    let fentry = bpf::Fentry::attach(function)?;
    std::fs::write(ready, b"").map_err(|e| format!("{ready}: {e}"))?;
    while !std::path::Path::new(stop).exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fentry.count()
}

/// This thread's /proc/thread-self/fail-nth, opened once: opening it (or
/// anything else) between arming and the operation would itself allocate.
struct FailNth(std::fs::File);

impl FailNth {
    fn open() -> Result<Self, String> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .map(Self)
            .map_err(|e| format!("fail-nth: {e}"))
    }

    /// Makes the n-th fault-injection point of this thread from now fail.
    fn arm(&self, n: u32) -> Result<(), String> {
        let text = format!("{n}");
        nix::sys::uio::pwrite(&self.0, text.as_bytes(), 0)
            .map(drop)
            .map_err(|e| format!("fail-nth: {e}"))
    }

    /// Whether the armed failure happened (the count ran down to 0); disarms.
    fn fired(&self) -> Result<bool, String> {
        let mut buf = [0u8; 16];
        let n = nix::sys::uio::pread(&self.0, &mut buf, 0).map_err(|e| format!("fail-nth: {e}"))?;
        nix::sys::uio::pwrite(&self.0, b"0", 0).map_err(|e| format!("fail-nth: {e}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim() == "0")
    }
}

fn fail_nth_sweep(ko: &str) -> Result<String, String> {
    use ksplice::device::{Device, Retry};
    use ksplice_core::uapi::{Abort, UpdateState};
    let update =
        ksplice::module::UpdateFile::read(std::path::Path::new(ko)).map_err(|e| e.to_string())?;
    ksplice::module::load(&update.path).map_err(|e| e.to_string())?;
    let device = Device::open().map_err(|e| e.to_string())?;
    let fail_nth = FailNth::open()?;
    let retry = Retry {
        tries: 20,
        retry_ms: 10,
    };
    let real_ppid = nix::unistd::getppid().as_raw();
    // SAFETY: getppid has no arguments and cannot fail.
    let ppid = || unsafe { nix::libc::syscall(nix::libc::SYS_getppid) } as i32;
    let state = |device: &Device| -> Result<Option<UpdateState>, String> {
        Ok(device
            .list()
            .map_err(|e| e.to_string())?
            .iter()
            .find(|e| e.id_str() == Some(update.id.as_str()))
            .and_then(|e| UpdateState::from_u32(e.state)))
    };
    let check_applied = |device: &Device, applied: bool, what: &str| -> Result<(), String> {
        let st = state(device)?;
        let want_ppid = if applied {
            real_ppid + 1_000_000
        } else {
            real_ppid
        };
        if (st == Some(UpdateState::Applied)) != applied || ppid() != want_ppid {
            return Err(format!(
                "{what}: state {st:?}, getppid {}, want applied={applied}",
                ppid()
            ));
        }
        if applied {
            let (r, _) = device.verify(Some(&update.id)).map_err(|e| e.to_string())?;
            if r.abort != 0 {
                return Err(format!(
                    "{what}: verify says abort {}: {}",
                    r.abort,
                    r.detail_str()
                ));
            }
        }
        Ok(())
    };
    let mut report = String::new();
    for op in ["apply", "undo"] {
        let (mut refused, mut succeeded) = (0u32, 0u32);
        let mut tolerated = Vec::new();
        for n in 1.. {
            // Start each try from the state the operation expects.
            let want_applied = op == "undo";
            if (state(&device)? == Some(UpdateState::Applied)) != want_applied {
                let r = if want_applied {
                    device.apply(&update.payload, &update.module_name, retry)
                } else {
                    device.undo(&update.id, retry)
                }
                .map_err(|e| e.to_string())?;
                if r.abort != 0 {
                    return Err(format!("resetting for {op} #{n}: {}", r.detail_str()));
                }
            }
            fail_nth.arm(n)?;
            let result = if op == "apply" {
                device.apply(&update.payload, &update.module_name, retry)
            } else {
                device.undo(&update.id, retry)
            };
            let fired = fail_nth.fired()?;
            let result = result.map_err(|e| format!("{op} #{n}: {e}"))?;
            let done = result.abort == 0;
            let what = format!("{op} with allocation #{n} failing");
            check_applied(&device, done == (op == "apply"), &what)?;
            match Abort::from_u32(result.abort) {
                Some(Abort::None) => {
                    succeeded += 1;
                    if fired {
                        tolerated.push(n);
                    }
                }
                Some(Abort::OutOfMemory | Abort::KernelError) => refused += 1,
                other => {
                    return Err(format!(
                        "{what}: refused with {other:?}: {}",
                        result.detail_str()
                    ))
                }
            }
            if !fired {
                if !done {
                    return Err(format!(
                        "{op} failed with no failure injected: {}",
                        result.detail_str()
                    ));
                }
                report += &format!(
                    "{op}: {} allocations, {refused} refused cleanly, {succeeded} succeeded (despite failing #{tolerated:?}); ",
                    n - 1
                );
                break;
            }
        }
    }
    Ok(report)
}

fn exit_thread(name: &str) -> ExitCode {
    if let Err(e) = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(|| ())
    {
        eprintln!("exit-thread: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn as_nobody(argv: &[String]) -> ExitCode {
    let nobody_gid = nix::unistd::Gid::from_raw(65534);
    let nobody_uid = nix::unistd::Uid::from_raw(65534);
    if let Err(e) = nix::unistd::setgroups(&[])
        .and_then(|_| nix::unistd::setgid(nobody_gid))
        .and_then(|_| nix::unistd::setuid(nobody_uid))
    {
        eprintln!("vmtool: cannot become nobody: {e}");
        return ExitCode::FAILURE;
    }
    exec(argv)
}

fn without_cap_sys_module(argv: &[String]) -> ExitCode {
    const CAP_SYS_MODULE: u64 = 16;
    // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
    let rc = unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0) };
    if rc != 0 {
        eprintln!("vmtool: PR_CAPBSET_DROP failed: {}", Errno::last());
        return ExitCode::FAILURE;
    }
    exec(argv)
}

/// A copy of `ko` that names another vmlinux build id, stored in
/// `state_dir`'s set for that build.
fn store_for_other_build(ko: &str, state_dir: &str) -> Result<String, String> {
    use ksplice::module::UpdateFile;
    let update = UpdateFile::read(std::path::Path::new(ko)).map_err(|e| e.to_string())?;
    let mut data = std::fs::read(ko).map_err(|e| e.to_string())?;
    let at = data
        .windows(update.payload.len())
        .position(|w| w == update.payload.as_slice())
        .ok_or("payload not found in the file")?;
    // The build id starts at header offset 128 (see apply-payload buildid).
    data[at + 128] ^= 0xff;
    let copy = std::env::temp_dir().join(format!("{}-other-build.ko", update.id));
    std::fs::write(&copy, &data).map_err(|e| e.to_string())?;
    let other = UpdateFile::read(&copy).map_err(|e| e.to_string())?;
    let stored = ksplice::persist::StateDir::new(std::path::Path::new(state_dir))
        .store(&other)
        .map_err(|e| e.to_string())?;
    Ok(stored.path.display().to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [_, "open-errno", path] => {
            println!("{}", open_errno(path));
            ExitCode::SUCCESS
        }
        [_, "apply-payload", ko, mutation] => match apply_payload(ko, mutation) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("apply-payload: {e}");
                ExitCode::FAILURE
            }
        },
        [_, "send-break", tty, deciseconds] => {
            match deciseconds
                .parse()
                .map_err(|e| format!("{e}"))
                .and_then(|d| send_break(tty, d))
            {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("send-break: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        [_, "capget-v1"] => match capget_v1() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("capget-v1: {e}");
                ExitCode::FAILURE
            }
        },
        [_, "empty-stop"] => match empty_stop() {
            Ok(ns) => {
                println!("{ns}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("empty-stop: {e}");
                ExitCode::FAILURE
            }
        },
        [_, "spawn-threads", n, ready] => match n
            .parse()
            .map_err(|e| format!("{e}"))
            .and_then(|n| spawn_threads(n, ready))
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("spawn-threads: {e}");
                ExitCode::FAILURE
            }
        },
        [_, "getppid-loop", stop, spin] => match spin.parse() {
            Ok(spin) => getppid_loop(stop, spin),
            Err(e) => {
                eprintln!("getppid-loop: {e}");
                ExitCode::from(2)
            }
        },
        [_, "cycle", ko, n] => match n
            .parse()
            .map_err(|e| format!("{e}"))
            .and_then(|n| cycle(ko, n))
        {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cycle: {e}");
                ExitCode::FAILURE
            }
        },
        [_, "bpf-fentry", function, ready, stop] => match bpf_fentry(function, ready, stop) {
            Ok(n) => {
                println!("{n}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bpf-fentry: {e}");
                ExitCode::FAILURE
            }
        },
        [_, "exit-thread", name] => exit_thread(name),
        [_, "fail-nth-sweep", ko] => match fail_nth_sweep(ko) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fail-nth-sweep: {e}");
                ExitCode::FAILURE
            }
        },
        [_, "store-for-other-build", ko, state_dir] => match store_for_other_build(ko, state_dir) {
            Ok(path) => {
                println!("{path}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("store-for-other-build: {e}");
                ExitCode::FAILURE
            }
        },
        [_, "as-nobody", _, ..] => as_nobody(&args[2..]),
        [_, "without-cap", _, ..] => without_cap_sys_module(&args[2..]),
        [_, "ioctl-garbage", path] => match ioctl_garbage(path) {
            Ok(n) => {
                println!("ioctl-garbage: {n} requests, all refused as expected");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ioctl-garbage: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: vmtool open-errno PATH | ioctl-garbage PATH | as-nobody CMD... | without-cap CMD...");
            ExitCode::from(2)
        }
    }
}
