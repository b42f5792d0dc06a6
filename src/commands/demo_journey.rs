//! The member's side of the demo: following a mailed link through the
//! sandbox's journey shortcut, as the first connections and the update
//! journeys of `demo` both do.

use anyhow::Context;

/// Follow a mailed link through the sandbox's member journey (register or
/// log in, agree) as the member `mydexid` would; the demo's first
/// connections and its update journeys both go this way.
pub(super) async fn complete(
    http: &reqwest::Client,
    sandbox_url: &str,
    link: Option<&str>,
    mydexid: &str,
    email: &str,
) -> anyhow::Result<()> {
    let answer: serde_json::Value = http
        .post(format!("{sandbox_url}/_sandbox/journeys"))
        .json(&serde_json::json!({ "url": link, "mydexid": mydexid, "email": email }))
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("completing the journey of {mydexid} in the sandbox"))?
        .json()
        .await?;
    tracing::debug!(%answer, "journey completed");
    Ok(())
}
