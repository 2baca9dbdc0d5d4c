//! README's tables of commands, exit codes and the `ksplice-view --json`
//! schema agree with what the tools print for `--help`, with their man
//! pages and with the JSON they write.

use std::collections::BTreeMap;
use std::path::Path;

use ksplice::args::Tool;
use ksplice::status::{SCHEMA_PERSISTED, SCHEMA_TOP, SCHEMA_UPDATE};
use ksplice::ExitStatus;
use ksplice_gendoc::man_page;

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(path).unwrap()
}

/// The rows of the README table whose header row is `header`, as cells
/// with inline-code backticks removed.
fn table(readme: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = readme.lines().skip_while(|l| l.trim() != header);
    assert!(lines.next().is_some(), "README has no table `{header}`");
    lines
        .skip(1) // the |---| line
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().replace('`', ""))
                .collect()
        })
        .collect()
}

fn name(tool: Tool) -> String {
    tool.command().get_name().to_owned()
}

/// (code, meaning) pairs of a man page's EXIT STATUS section.
fn man_exit_codes(page: &str) -> Vec<(u8, String)> {
    let lines: Vec<&str> = page
        .lines()
        .skip_while(|l| *l != ".SH \"EXIT STATUS\"")
        .skip(1)
        .take_while(|l| !l.starts_with(".SH"))
        .filter(|l| *l != ".TP")
        .collect();
    lines
        .chunks(2)
        .map(|pair| {
            let code = pair[0]
                .trim_start_matches("\\fB")
                .trim_end_matches("\\fR")
                .parse()
                .unwrap();
            (code, pair[1].replace("\\-", "-"))
        })
        .collect()
}

#[test]
fn the_command_table_lists_every_tool_with_its_help_summary() {
    let rows = table(&readme(), "| command | what it does |");
    let documented: Vec<(String, String)> =
        rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    let tools: Vec<(String, String)> = Tool::ALL
        .iter()
        .map(|t| {
            let about = t.command().get_about().unwrap().to_string();
            (name(*t), about)
        })
        .collect();
    assert_eq!(documented, tools);
}

#[test]
fn the_exit_code_table_is_what_help_and_the_man_pages_say() {
    let rows = table(&readme(), "| code | meaning |");
    let documented: Vec<(u8, String)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone()))
        .collect();
    let defined: Vec<(u8, String)> = ExitStatus::ALL
        .iter()
        .map(|c| (*c as u8, c.meaning().to_owned()))
        .collect();
    assert_eq!(documented, defined, "README's exit codes");
    let readme_meaning: BTreeMap<u8, String> = documented.into_iter().collect();
    for tool in Tool::ALL {
        let help = tool.command().render_long_help().to_string();
        let page = String::from_utf8(man_page(tool).unwrap()).unwrap();
        let in_man = man_exit_codes(&page);
        assert_eq!(
            in_man.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            tool.exit_codes()
                .iter()
                .map(|c| *c as u8)
                .collect::<Vec<_>>(),
            "{}(8) EXIT STATUS",
            name(tool)
        );
        for (code, meaning) in in_man {
            assert_eq!(meaning, readme_meaning[&code], "{} code {code}", name(tool));
            let line = format!("  {code}  {meaning}");
            assert!(
                help.contains(&line),
                "{} --help lacks `{line}`:\n{help}",
                name(tool)
            );
        }
    }
}

#[test]
fn every_man_page_names_its_tool_and_documents_every_option() {
    for tool in Tool::ALL {
        let page = String::from_utf8(man_page(tool).unwrap()).unwrap();
        let about = tool.command().get_about().unwrap().to_string();
        assert!(page.contains(&format!(".TH {} 8", name(tool))), "{page}");
        let name_section: String = page
            .lines()
            .skip_while(|l| *l != ".SH NAME")
            .nth(1)
            .unwrap()
            .replace("\\-", "-");
        assert_eq!(name_section, format!("{} - {about}", name(tool)));
        for arg in tool.command().get_arguments() {
            if let Some(long) = arg.get_long() {
                assert!(
                    page.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                    "{}(8) lacks --{long}",
                    name(tool)
                );
            }
        }
    }
}

#[test]
fn the_json_schema_table_documents_exactly_the_keys_written() {
    let rows = table(&readme(), "| object | key | type | meaning |");
    let mut documented: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        documented
            .entry(r[0].clone())
            .or_default()
            .push(r[1].clone());
    }
    let own = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(documented["top level"], own(&SCHEMA_TOP));
    assert_eq!(documented["updates[]"], own(&SCHEMA_UPDATE));
    assert_eq!(documented["persisted[]"], own(&SCHEMA_PERSISTED));
    assert_eq!(documented["auto_apply"], own(&["enabled", "reason"]));
    assert_eq!(documented.len(), 4);
}

#[test]
fn readme_abort_table_explains_every_abort_code() {
    let readme = readme();
    let rows = table(&readme, "| abort code | meaning |");
    let listed: Vec<String> = rows
        .iter()
        .flat_map(|row| row[0].split(", ").map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let known: Vec<&str> = (1..)
        .map_while(ksplice_core::uapi::Abort::from_u32)
        .map(|a| a.as_str())
        .collect();
    assert!(known.len() >= 20, "{known:?}");
    for code in &known {
        assert!(
            listed.iter().any(|l| l == code),
            "README's abort table lacks {code}"
        );
    }
    for code in &listed {
        assert!(
            known.contains(&code.as_str()),
            "README lists unknown abort code {code}"
        );
    }
}
