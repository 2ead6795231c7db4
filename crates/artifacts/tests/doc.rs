//! docs/ARTIFACTS.md cannot drift from the declarations: every declared table kind has a section
//! naming its kind and version, and that section names every column.

use brainpipe_artifacts::{column_names, declared};

const DOC: &str = include_str!("../../../docs/ARTIFACTS.md");

/// The lines of the section whose heading names `kind` at `version`, up to the next heading of
/// the same or a higher level.
fn section(name: &str, version: u32) -> Option<String> {
    let lines: Vec<&str> = DOC.lines().collect();
    let names_kind = |line: &str| {
        line.starts_with('#')
            && (line.contains(&format!("kind `{name}/{version}`"))
                || line.contains(&format!("table kind `{name}`, version {version}")))
    };
    let start = lines.iter().position(|l| names_kind(l))?;
    let level = lines[start].chars().take_while(|&c| c == '#').count();
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with('#') && l.chars().take_while(|&c| c == '#').count() <= level)
        .map_or(lines.len(), |i| start + 1 + i);
    Some(lines[start..end].join("\n"))
}

#[test]
fn every_declared_kind_and_column_is_documented() {
    let mut missing = Vec::new();
    for d in declared() {
        let Some(text) = section(d.kind.name, d.kind.version) else {
            missing.push(format!("no section for `{}`", d.kind.tag()));
            continue;
        };
        for column in column_names(&d.schema) {
            if !text.contains(&format!("`{column}`")) {
                missing.push(format!("`{}`: column `{column}`", d.kind.tag()));
            }
        }
    }
    assert!(missing.is_empty(), "docs/ARTIFACTS.md lacks: {missing:#?}");
}

#[test]
fn kinds_are_declared_once() {
    let mut names: Vec<&str> = declared().iter().map(|d| d.kind.name).collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "a kind declared twice");
}
