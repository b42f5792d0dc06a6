//! `mydex-connector completions SHELL`: a completion script for bash, zsh or
//! fish (or elvish, PowerShell), generated from the command line's own
//! definition, so it offers every command and option the binary parses. The
//! Debian package installs the bash, zsh and fish ones (`scripts/deb`
//! generates them); elsewhere, e.g.
//! `mydex-connector completions bash > ~/.local/share/bash-completion/completions/mydex-connector`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap_complete::Shell;

const BIN: &str = "mydex-connector";

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print the script for `args.shell` to standard output.
pub fn run(args: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, BIN, &mut script);
    if args.shell == Shell::Bash {
        script = bash_states_agree(&script).into_bytes();
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .context("cannot write the completion script to standard output")?;
    Ok(ExitCode::SUCCESS)
}

/// The bash script walks the words typed into a state named
/// `mydex__connector__subcmd__invitations` (the binary's `-` spelt `__`),
/// but clap_complete spells the case arms it matches that state against with
/// the binary's `-` as a subcommand separator (`mydex__subcmd__connector__…`):
/// no arm matches, and nothing after the first word completes. Spelling the
/// arms as the walk does makes `mydex-connector invitations <TAB>` offer
/// `list show retry` (`tests/it/manpage.rs` checks it); once clap_complete
/// spells them alike, there is nothing left to replace.
fn bash_states_agree(script: &[u8]) -> String {
    String::from_utf8_lossy(script).replace("mydex__subcmd__connector", "mydex__connector")
}
