//! `ksplice-gendoc OUTDIR`: writes OUTDIR/man/NAME.8 and
//! OUTDIR/completions/{bash,zsh,fish}/FILE for every tool. Run by
//! scripts/build-deb; not installed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ksplice::args::Tool;
use ksplice_gendoc::{completion, completion_file_name, man_page, MAN_SECTION, SHELLS};

fn write(path: &Path, data: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(out: &Path) -> Result<(), String> {
    for tool in Tool::ALL {
        let name = tool.command().get_name().to_owned();
        let page = man_page(tool).map_err(|e| format!("{name}: {e}"))?;
        write(
            &out.join("man").join(format!("{name}.{MAN_SECTION}")),
            &page,
        )?;
        for (shell, dir) in SHELLS {
            let file = completion_file_name(shell, &name);
            write(
                &out.join("completions").join(dir).join(file),
                &completion(tool, shell),
            )?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, out] = args.as_slice() else {
        eprintln!("usage: ksplice-gendoc OUTDIR");
        return ExitCode::from(2);
    };
    match run(&PathBuf::from(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ksplice-gendoc: {e}");
            ExitCode::FAILURE
        }
    }
}
