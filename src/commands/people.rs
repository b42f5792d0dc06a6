//! `mydex-connector people forget --config PATH (--email E | --external-ref R)
//! [--disconnect]`: erase what the running daemon holds about one person
//! (`POST /people/forget`), keeping only their suppression hash so they are
//! not invited again. A connected member is refused unless `--disconnect`.

use std::process::ExitCode;

use crate::commands::config_path::ConfigPath;

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
    },
}

pub async fn run(command: PeopleCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    match command {
        PeopleCommand::Forget {
            email,
            external_ref,
            disconnect,
        } => {
            let settings = config.load()?;
            if settings.admin.token.is_none() {
                anyhow::bail!(
                    "admin.token_file is not configured in {}: the daemon refuses state-changing calls without it",
                    settings.source.display()
                );
            }
            let body = match (email, external_ref) {
                (Some(e), _) => serde_json::json!({"email": e, "disconnect": disconnect}),
                (None, Some(r)) => serde_json::json!({"external_ref": r, "disconnect": disconnect}),
                (None, None) => anyhow::bail!("give --email or --external-ref"),
            };
            let client = crate::commands::admin_client::AdminClient::new(&settings)?;
            let done = client.post_json("/people/forget", &body).await?;
            println!("{done}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
