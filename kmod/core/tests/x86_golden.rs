//! Checks the x86 decoder against objdump on real kernel code: every
//! instruction of a sample of the test kernel's functions (see
//! `fixtures/gen-x86-golden.sh` for the format and how to refresh it).

use ksplice_core::x86::{decode, instructions, Insn, Kind};

const GOLDEN: &str = include_str!("fixtures/x86-golden.txt");

struct Expected<'a> {
    bytes: Vec<u8>,
    mnemonic: &'a str,
    target: Option<u64>,
}

struct Block<'a> {
    name: &'a str,
    addr: u64,
    insns: Vec<Expected<'a>>,
}

fn parse_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd hex {hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex byte"))
        .collect()
}

fn parse(text: &str) -> Vec<Block<'_>> {
    let mut blocks: Vec<Block<'_>> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let Some(header) = line.strip_prefix("# ") {
            let (name, addr) = header.rsplit_once(' ').expect("header");
            blocks.push(Block {
                name,
                addr: u64::from_str_radix(addr, 16).expect("address"),
                insns: Vec::new(),
            });
            continue;
        }
        let bytes = parse_hex(words.next().expect("bytes"));
        let mnemonic = words.next().expect("mnemonic");
        let target = words
            .next()
            .map(|t| u64::from_str_radix(t, 16).expect("target"));
        blocks
            .last_mut()
            .expect("instruction before first header")
            .insns
            .push(Expected {
                bytes,
                mnemonic,
                target,
            });
    }
    blocks
}

/// What objdump's mnemonic says the instruction is.
fn kind_of(mnemonic: &str) -> Kind {
    match mnemonic {
        "call" => Kind::Call,
        "call*" | "lcall*" => Kind::IndirectCall,
        "jmp" => Kind::Jmp,
        "jmp*" | "ljmp*" => Kind::IndirectJmp,
        "ret" | "lret" | "retq" | "lretq" => Kind::Ret,
        "int3" => Kind::Int3,
        "ud0" | "ud1" | "ud2" => Kind::Ud,
        "nop" | "nopl" | "nopw" => Kind::Nop,
        "endbr64" => Kind::Endbr64,
        m if m.starts_with("loop") || m == "jrcxz" || m == "jecxz" => Kind::Jcc,
        m if m.starts_with('j') => Kind::Jcc,
        _ => Kind::Other,
    }
}

/// objdump's spelling for bytes that are no valid instruction.
fn objdump_rejects(mnemonic: &str) -> bool {
    mnemonic == "(bad)" || mnemonic == ".byte" || mnemonic.starts_with("rex")
}

fn check(insn: &Insn, expected: &Expected<'_>, addr: u64) -> Result<(), String> {
    if insn.size() != expected.bytes.len() {
        return Err(format!(
            "length {} instead of {}",
            insn.len,
            expected.bytes.len()
        ));
    }
    let kind = kind_of(expected.mnemonic);
    if insn.kind != kind {
        return Err(format!("kind {:?} instead of {kind:?}", insn.kind));
    }
    if insn.branch_target(addr) != expected.target {
        return Err(format!(
            "branch target {:x?} instead of {:x?}",
            insn.branch_target(addr),
            expected.target
        ));
    }
    Ok(())
}

#[test]
fn decoder_agrees_with_objdump_on_kernel_code() {
    let blocks = parse(GOLDEN);
    let mut failures = Vec::new();
    let (mut decoded, mut rejected, mut branches) = (0usize, 0usize, 0usize);
    for block in &blocks {
        let code: Vec<u8> = block.insns.iter().flat_map(|i| i.bytes.clone()).collect();
        let mut offset = 0usize;
        for expected in &block.insns {
            let addr = block.addr + offset as u64;
            let result = decode(&code[offset..]);
            let verdict = match (&result, objdump_rejects(expected.mnemonic)) {
                (Ok(insn), false) => check(insn, expected, addr),
                (Err(_), true) => Ok(()),
                (Ok(insn), true) => Err(format!("decoded {} bytes objdump rejects", insn.len)),
                (Err(err), false) => Err(format!("error: {err}")),
            };
            match verdict {
                Ok(()) if result.is_ok() => {
                    decoded += 1;
                    branches += usize::from(expected.target.is_some());
                }
                Ok(()) => rejected += 1,
                Err(why) => failures.push(format!(
                    "{}+{offset:#x}: {:02x?} {}: {why}",
                    block.name, expected.bytes, expected.mnemonic
                )),
            }
            offset += expected.bytes.len();
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures
            .iter()
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Guards against a fixture that silently stopped parsing.
    assert!(blocks.len() >= 300, "only {} blocks", blocks.len());
    assert!(decoded >= 12_000, "only {decoded} instructions");
    assert!(branches >= 1_000, "only {branches} branches");
    assert!(rejected >= 3, "only {rejected} invalid sequences");
}

#[test]
fn sequential_decoding_finds_objdump_boundaries() {
    for block in parse(GOLDEN) {
        // Stop before the first sequence objdump rejects; decoding stops there too.
        let valid: Vec<&Expected<'_>> = block
            .insns
            .iter()
            .take_while(|i| !objdump_rejects(i.mnemonic))
            .collect();
        let code: Vec<u8> = valid.iter().flat_map(|i| i.bytes.clone()).collect();
        let ours: Vec<(usize, u8)> = instructions(&code)
            .map(|r| r.map(|(offset, insn)| (offset, insn.len)))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|err| panic!("{}: {err}", block.name));
        let mut offset = 0;
        let theirs: Vec<(usize, u8)> = valid
            .iter()
            .map(|i| {
                let here = offset;
                offset += i.bytes.len();
                (here, i.bytes.len() as u8)
            })
            .collect();
        assert_eq!(ours, theirs, "{}", block.name);
    }
}

#[test]
fn fixture_covers_the_kernel_patching_patterns() {
    let hex: Vec<&str> = GOLDEN
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let has = |prefix: &str| hex.iter().any(|h| h.starts_with(prefix));
    for pattern in [
        "e8",         // call rel32
        "e9",         // jmp rel32
        "eb",         // jmp rel8
        "2ee8",       // cs call to a retpoline thunk
        "6690",       // NOP2
        "0f1f4400",   // NOP5
        "f30f1efa",   // endbr64
        "0faee8",     // lfence
        "ff15",       // call *disp32(%rip)
        "65488b05",   // %gs:-relative RIP load
        "48b8",       // movabs imm64
        "f0480fb1",   // lock cmpxchg
        "67480fb9",   // ud1
        "0f0b",       // ud2
        "66662e0f1f", // 11-byte NOP
        "c5",         // VEX
        "62",         // EVEX
    ] {
        assert!(has(pattern), "no instruction starting with {pattern}");
    }
}
