//! The man pages and shell completions the Debian package installs, generated
//! by the real binary from its own command line: the main page is roff with
//! NAME, SYNOPSIS and every command `--help` lists (and `man` renders it
//! without a warning), each command has its own page, and bash completion,
//! run by bash as it runs it on a TAB, offers every command, a command's
//! subcommands and its options.

use std::path::Path;
use std::process::{Command, Output};

use mydex_test_support::bin;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The commands `mydex-connector --help` lists, but clap's own `help`.
fn commands_in_help() -> Vec<String> {
    let out = run(Command::new(bin()).arg("--help"));
    let text = String::from_utf8(out.stdout).expect("utf-8 help");
    let commands: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // "  run  Run the daemon"; a wrapped description is indented further
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(
        commands.len() >= 15 && commands.iter().any(|c| c == "enqueue"),
        "the commands of --help: {commands:?}\n{text}"
    );
    commands
}

/// Roff source with its escaped hyphens (`\-`) read as hyphens.
fn roff_text(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("\\-", "-")
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_man_pages_name_every_command_and_render() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(Command::new(bin())
        .arg("manpage")
        .arg("--out")
        .arg(dir.path()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("man pages written"));
    let main = dir.path().join("mydex-connector.1");
    let roff = roff_text(&main);
    assert!(roff.contains(".TH mydex-connector 1"), "{roff}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH SUBCOMMANDS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
    ] {
        assert!(
            roff.contains(section),
            "no {section} in the main page:\n{roff}"
        );
    }
    let commands = commands_in_help();
    for command in &commands {
        assert!(
            roff.contains(&format!("mydex-connector-{command}(1)")),
            "the main page does not list {command}:\n{roff}"
        );
        let page = roff_text(&dir.path().join(format!("mydex-connector-{command}.1")));
        assert!(
            page.contains(".SH SYNOPSIS") && page.contains(&format!("mydex-connector {command}")),
            "the page of {command}:\n{page}"
        );
    }
    // A command's own subcommands have pages too, with their options.
    let list = roff_text(&dir.path().join("mydex-connector-invitations-list.1"));
    assert!(list.contains("--state"), "{list}");

    if have("man") {
        let rendered = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&main)
            .env("MANWIDTH", "200")
            .output()
            .expect("man runs");
        let text = String::from_utf8_lossy(&rendered.stdout);
        let warnings = String::from_utf8_lossy(&rendered.stderr);
        assert!(rendered.status.success(), "man -l failed: {warnings}");
        assert!(warnings.trim().is_empty(), "man -l warned: {warnings}");
        for heading in ["NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "FILES"] {
            assert!(
                text.lines().any(|l| l == heading),
                "{heading} not rendered:\n{text}"
            );
        }
        for command in &commands {
            assert!(
                text.contains(&format!("mydex-connector-{command}(1)")),
                "{text}"
            );
        }
    } else {
        eprintln!("man is not installed here: the roff source was checked, not its rendering");
    }
}

/// What bash completes for the words typed after `mydex-connector` (the
/// last one being completed), by the function the script registers with
/// `complete -F`, called the way bash calls it on a TAB.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    const HARNESS: &str = r#"
source "$1"; shift
fn=$(complete -p mydex-connector | sed -E 's/.* -F ([^ ]+) .*/\1/')
COMP_WORDS=(mydex-connector "$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
"$fn" mydex-connector "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = run(Command::new("bash")
        .args(["-c", HARNESS, "harness"])
        .arg(script)
        .args(words));
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_offers_the_commands_their_subcommands_and_options() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("mydex-connector");
    let out = run(Command::new(bin()).args(["completions", "bash"]));
    std::fs::write(&script, &out.stdout).expect("write the script");

    let top = bash_completes(&script, &[""]);
    for command in commands_in_help() {
        assert!(top.contains(&command), "{command} not offered: {top:?}");
    }
    let partial = bash_completes(&script, &["inv"]);
    assert_eq!(partial, ["invitations"]);
    let nested = bash_completes(&script, &["invitations", ""]);
    for sub in ["list", "show", "retry"] {
        assert!(
            nested.iter().any(|c| c == sub),
            "{sub} not offered: {nested:?}"
        );
    }
    let options = bash_completes(&script, &["enqueue", "--"]);
    for option in ["--config", "--campaign", "--help"] {
        assert!(options.iter().any(|c| c == option), "{option}: {options:?}");
    }
}

#[test]
fn zsh_and_fish_completions_name_the_commands() {
    let commands = commands_in_help();
    for (shell, opening, checker) in [
        ("zsh", "#compdef mydex-connector", "zsh"),
        ("fish", "", "fish"),
    ] {
        let out = run(Command::new(bin()).args(["completions", shell]));
        let script = String::from_utf8(out.stdout).expect("utf-8");
        assert!(script.starts_with(opening), "{shell}:\n{script}");
        for command in &commands {
            assert!(script.contains(command.as_str()), "{shell}: no {command}");
        }
        if have(checker) {
            let dir = tempfile::tempdir().expect("temp dir");
            let file = dir.path().join(format!("mydex-connector.{shell}"));
            std::fs::write(&file, &script).expect("write the script");
            run(Command::new(checker).arg("-n").arg(&file));
        }
    }
    let fish = run(Command::new(bin()).args(["completions", "fish"]));
    assert!(String::from_utf8_lossy(&fish.stdout).contains("complete -c mydex-connector"));
}
