//! `mydex-connector people forget --config PATH (--email E | --external-ref R)
//! [--disconnect]`: erase what the running daemon holds about one person
//! (`POST /people/forget`), keeping only their suppression hash so they are
//! not invited again. A connected member is refused unless `--disconnect`.

use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;
use mydex_connector::admin_api::people::{ForgetRequest, Forgotten};

use super::human::counted;

#[derive(clap::Subcommand, Debug)]
pub enum PeopleCommand {
    /// Erase an invitee's address, name, extra columns, readings and
    /// callbacks; only the suppression hash stays (exit 1 with the daemon's
    /// reason when it refuses: nothing held, or a connected member without
    /// --disconnect).
    Forget {
        #[arg(long, group = "who", required = true)]
        email: Option<String>,
        #[arg(long, group = "who", required = true)]
        external_ref: Option<String>,
        /// Also erase a connected member's record and connection key.
        #[arg(long)]
        disconnect: bool,
        /// Print the daemon's JSON answer instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: PeopleCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let PeopleCommand::Forget {
        email,
        external_ref,
        disconnect,
        json,
    } = command;
    let settings = config.load()?;
    if settings.admin.token.is_none() {
        anyhow::bail!(
            "admin.token_file is not configured in {}: the daemon refuses state-changing calls without it",
            settings.source.display()
        );
    }
    if email.is_none() && external_ref.is_none() {
        anyhow::bail!("give --email or --external-ref");
    }
    let body = serde_json::to_value(ForgetRequest {
        email,
        external_ref,
        disconnect,
    })?;
    let client = crate::commands::admin_client::AdminClient::new(&settings)?;
    let done = client.post_json("/people/forget", &body).await?;
    if json {
        println!("{done}");
        return Ok(ExitCode::SUCCESS);
    }
    let f: Forgotten = super::admin_client::parse(done, "/people/forget")?;
    println!(
        "forgotten: {}; erased {}, {}, {}, {} and {} in {}",
        f.persons.join(", "),
        counted(f.invitations, "invitation", "invitations"),
        counted(f.members, "member record", "member records"),
        counted(f.readings, "reading", "readings"),
        counted(f.raw_callbacks, "stored callback", "stored callbacks"),
        counted(f.lines, "line", "lines"),
        counted(f.files, "queue file", "queue files"),
    );
    println!("only their suppression hash is kept, so they are not invited again");
    Ok(ExitCode::SUCCESS)
}
