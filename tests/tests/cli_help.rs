//! `--help` of every command of `rill-driver` and `rilld`: each subcommand and each option
//! says what it is, as one reads it before anything else.

use std::path::Path;
use std::process::Command;

use rill_tests::{driver_bin, rilld_bin};

/// The entries of `--help` of `bin args...` and of each of its subcommands, recursively, that
/// have no text: as `BIN SUBCOMMAND... ENTRY`. clap prints an entry as its name (in which
/// words are one space apart: `--path <PATHS>`, `-h, --help`), two or more spaces, and its
/// help; an entry with no help is its name alone.
fn undocumented(bin: &Path, args: &[String]) -> Vec<String> {
    let out = Command::new(bin).args(args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} --help failed",
        bin.display()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut missing = Vec::new();
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = line;
            continue;
        }
        if !matches!(section, "Commands:" | "Arguments:" | "Options:") {
            continue;
        }
        let mut parts = line.trim().split("  ").filter(|p| !p.is_empty());
        let name = parts.next().unwrap_or_default();
        if parts.next().is_none() {
            missing.push(format!("{} {} {name}", bin.display(), args.join(" ")));
        }
        if section == "Commands:" && name != "help" {
            let mut sub = args.to_vec();
            sub.push(name.to_string());
            missing.extend(undocumented(bin, &sub));
        }
    }
    missing
}

#[test]
fn every_subcommand_and_option_has_help() {
    for bin in [driver_bin(), rilld_bin()] {
        assert_eq!(undocumented(bin, &[]), Vec::<String>::new());
    }
}

#[test]
fn a_subcommand_s_help_is_its_own() {
    // the doc comment of `capture` once stood above `demo` too, and clap merged the two
    let out = Command::new(driver_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let demo = text
        .lines()
        .find(|l| l.trim_start().starts_with("demo "))
        .unwrap();
    assert!(!demo.contains("every operation"), "{demo}");
    let capture = text
        .lines()
        .find(|l| l.trim_start().starts_with("capture "))
        .unwrap();
    assert!(capture.contains("every operation"), "{capture}");
}
