//! Passing PDX notifications on (`[notifications]`): each `type:
//! notification` callback, once stored, is handed to the operator's command
//! (run directly, no shell, the JSON on its standard input) and/or POSTed as
//! JSON to a webhook URL. Best effort, bounded in time and in how many run at
//! once; a failure is logged and never affects the callback's answer, since
//! the notification is already kept and counted in the store.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::config::NotificationSettings;

pub struct NotificationHook {
    command: Option<Vec<String>>,
    webhook: Option<reqwest::Url>,
    timeout: Duration,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
}

impl NotificationHook {
    /// None when nothing is configured.
    pub fn new(settings: &NotificationSettings) -> Option<Arc<Self>> {
        if settings.command.is_none() && settings.webhook_url.is_none() {
            return None;
        }
        Some(Arc::new(Self {
            command: settings.command.clone(),
            webhook: settings.webhook_url.clone(),
            timeout: settings.timeout,
            http: reqwest::Client::builder()
                .timeout(settings.timeout)
                .build()
                .unwrap_or_default(),
            permits: Arc::new(Semaphore::new(8)),
        }))
    }

    /// Hand `body` on in the background.
    pub fn dispatch(self: &Arc<Self>, body: serde_json::Value) {
        let me = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = me.permits.clone().acquire_owned().await else {
                return;
            };
            let json = body.to_string();
            if let Some(cmd) = &me.command {
                match tokio::time::timeout(me.timeout, run(cmd, json.as_bytes())).await {
                    Ok(Ok(status)) if status.success() => {
                        tracing::debug!(command = %cmd[0], "notification passed to the command")
                    }
                    Ok(Ok(status)) => {
                        tracing::warn!(command = %cmd[0], %status, "notification command failed")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(command = %cmd[0], error = %e, "cannot run the notification command")
                    }
                    Err(_) => {
                        tracing::warn!(command = %cmd[0], timeout = ?me.timeout, "notification command timed out (killed)")
                    }
                }
            }
            if let Some(url) = &me.webhook {
                let r = me
                    .http
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(json)
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        tracing::debug!("notification posted to the webhook")
                    }
                    Ok(resp) => {
                        tracing::warn!(status = %resp.status(), "notification webhook refused it")
                    }
                    Err(e) => tracing::warn!(error = %e, "notification webhook unreachable"),
                }
            }
        });
    }
}

async fn run(cmd: &[String], stdin: &[u8]) -> std::io::Result<std::process::ExitStatus> {
    let mut child = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).await?;
        input.shutdown().await?;
    }
    child.wait().await
}
