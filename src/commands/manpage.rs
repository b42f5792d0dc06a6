//! `mydex-connector manpage --out DIR`: the man pages, generated
//! from the command line's own definition so that they list every command and
//! option as the binary parses them, and cannot drift from it. The Debian
//! package carries them (`scripts/deb` runs this before `cargo deb`). The
//! main page, `mydex-connector(1)`, adds what `--help` does not say: exit
//! status, environment, files; each command has a page of its own, named as
//! git's are (`mydex-connector-enqueue(1)`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

/// The footer of every page: the package and its version.
const SOURCE: &str = concat!("mydex-connector ", env!("CARGO_PKG_VERSION"));

#[derive(clap::Args, Debug)]
pub struct ManpageArgs {
    /// Directory to write the pages into (created if missing):
    /// mydex-connector.1 and one page per command.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Write every page of `cmd` (the whole command line) into `args.out`.
pub fn run(args: ManpageArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // `help` is clap's own subcommand, not a page of ours; building sets the
    // names the pages are written under (mydex-connector-invitations-list).
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = 0usize;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_command_pages(sub.clone(), &args.out)?;
    }
    let main = args.out.join("mydex-connector.1");
    write_main_page(cmd, &main)?;
    written += 1;
    println!(
        "{written} man pages written to {} (mydex-connector.1 and one per command)",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A command's page and its subcommands' pages, depth first; how many.
fn write_command_pages(cmd: clap::Command, out: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_command_pages(sub.clone(), out)?;
    }
    let man = Man::new(cmd).source(SOURCE);
    let path = out.join(man.get_filename());
    man.generate_to(out)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(written + 1)
}

/// `mydex-connector(1)`: clap's sections with our description, then exit
/// status, environment, files and where to read on.
fn write_main_page(cmd: clap::Command, path: &Path) -> anyhow::Result<()> {
    let man = Man::new(cmd).source(SOURCE);
    let mut page = Vec::new();
    let rendered: std::io::Result<()> = (|| {
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        description().to_writer(&mut page)?;
        man.render_options_section(&mut page)?;
        man.render_subcommands_section(&mut page)?;
        reference().to_writer(&mut page)?;
        man.render_version_section(&mut page)
    })();
    rendered.context("cannot render the man page")?;
    std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))
}

/// DESCRIPTION: what the daemon is (clap's one line is already under NAME).
fn description() -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["DESCRIPTION"]).text([roman(
        "A headless daemon for Mydex PDX subscribers without a web front end of \
         their own: it reads invitees from a queue, asks Mydex for a one-time \
         First Time Connection link for each, mails the link and its QR code, \
         receives the member's connection credentials on its callback and keeps \
         them sealed in its store; then it delivers their readings into their \
         Personal Data Store, each exactly once.",
    )]);
    roff.control("PP", []).text([
        roman("The daemon is "),
        bold("mydex-connector run"),
        roman(", run by systemd as "),
        bold("mydex-connector.service"),
        roman(
            ". Every other command but rotate-key and store compact talks to the \
             running daemon through its admin API; those two, and the daemon, are the \
             only ones that open the store. Human tables by default; ",
        ),
        bold("--json"),
        roman(" for scripts."),
    ]);
    roff
}

/// EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO.
fn reference() -> Roff {
    let mut roff = Roff::default();
    definitions(&mut roff, "EXIT STATUS", EXIT_STATUS, |t| bold(t));
    definitions(&mut roff, "ENVIRONMENT", ENVIRONMENT, |t| bold(t));
    definitions(&mut roff, "FILES", FILES, |t| italic(t));
    roff.control("SH", ["SEE ALSO"]).text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), "),
        bold("systemd.exec"),
        roman("(5), and the page of each command above, e.g. "),
        bold("mydex-connector-enqueue"),
        roman("(1)."),
    ]);
    roff
}

/// A section of terms, each with what it means (`.TP` paragraphs).
fn definitions(roff: &mut Roff, heading: &str, items: &[(&str, &str)], term: fn(&str) -> Inline) {
    roff.control("SH", [heading]);
    for (name, meaning) in items {
        roff.control("TP", [])
            .text([term(name)])
            .text([roman(*meaning)]);
    }
}

const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "success (the daemon: stopped after draining its work)"),
    ("1", "any other failure, e.g. a store that cannot be opened"),
    ("2", "a usage error on the command line"),
    (
        "65",
        "bounce: the message is not a report naming a mail of ours; nothing changed",
    ),
    (
        "75",
        "the daemon: the store could not write (disk full), restart once it can; \
         bounce: the daemon is unreachable, try later",
    ),
    (
        "78",
        "a configuration error, a wrong store key, an unfinished key rotation or a \
         store written by a newer release (systemd does not restart it)",
    ),
];

const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "MYDEX_CONNECTOR_CONFIG",
        "the configuration file when --config is not given",
    ),
    (
        "MYDEX_CONNECTOR__SECTION__KEY",
        "overrides one key of the configuration, e.g. MYDEX_CONNECTOR__SMTP__URL",
    ),
    (
        "CREDENTIALS_DIRECTORY",
        "where systemd's LoadCredential= put the secrets (client_secret, \
         connection_token, store_key, admin_token, smtp_password, ...)",
    ),
    (
        "RUST_LOG",
        "overrides log.level (a level or an EnvFilter directive)",
    ),
    ("NO_COLOR", "no colour in messages, even on a terminal"),
];

const FILES: &[(&str, &str)] = &[
    (
        "/etc/mydex-connector/mydex-connector.toml",
        "the configuration (the default of --config)",
    ),
    (
        "/etc/mydex-connector/credentials/",
        "the secrets, one file each, readable by root only",
    ),
    (
        "/etc/mydex-connector/templates/",
        "the mail templates the sample configuration names",
    ),
    (
        "/var/lib/mydex-connector/",
        "the service's state: the store (db) and the watched queue directory",
    ),
    (
        "/usr/share/doc/mydex-connector/README.md",
        "where to start; the full guide is the book in the source tree (docs/book)",
    ),
];
