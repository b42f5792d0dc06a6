//! The daemon's suppression list asked over its admin API
//! (`POST /suppressions/check`), for `enqueue` and `enqueue --nats` to
//! report suppressed people before they are queued or published.

use mydex_connector::config::Settings;
use mydex_connector::intake::precheck::{CheckFailed, SuppressionCheck};

use crate::commands::admin_client::AdminClient;

/// How long one suppression check (1,000 addresses) may take.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The daemon's suppression list, asked over the admin API.
pub(crate) struct DaemonCheck {
    client: AdminClient,
}

impl DaemonCheck {
    pub(crate) fn new(settings: &Settings) -> anyhow::Result<Self> {
        Ok(DaemonCheck {
            client: AdminClient::with_timeout(settings, CHECK_TIMEOUT)?,
        })
    }
}

impl SuppressionCheck for DaemonCheck {
    fn check(&mut self, emails: &[String]) -> Result<Vec<(usize, String)>, CheckFailed> {
        let body = serde_json::json!({ "emails": emails });
        let handle = tokio::runtime::Handle::current();
        let answer = tokio::task::block_in_place(|| {
            handle.block_on(self.client.post_json("/suppressions/check", &body))
        })
        .map_err(|e| CheckFailed(format!("{e:#}")))?;
        let found = answer["suppressed"]
            .as_array()
            .ok_or_else(|| CheckFailed("the daemon's answer has no \"suppressed\" list".into()))?;
        Ok(found
            .iter()
            .filter_map(|f| {
                let i = usize::try_from(f["index"].as_u64()?).ok()?;
                Some((i, f["reason"].as_str().unwrap_or("suppressed").to_string()))
            })
            .collect())
    }
}
