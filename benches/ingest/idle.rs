//! Idle work: what the daemon spends while it holds queued invitations it
//! may not send (the campaign paused by the operator), read from outside as
//! an operator's monitoring would: CPU time (`/proc/PID/stat`), bytes it
//! had written to storage and read calls (`/proc/PID/io`), and how the store
//! directory's size moved. None of it should grow with the number queued:
//! the bench measures it at two queue sizes so the ratio shows.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};

/// `/proc/PID/io` fields: bytes sent to the storage layer, read and write
/// system calls.
#[derive(Clone, Copy, Default)]
struct Io {
    write_bytes: u64,
    syscr: u64,
    syscw: u64,
}

fn io(pid: u32) -> Option<Io> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    Some(Io {
        write_bytes: field("write_bytes:")?,
        syscr: field("syscr:")?,
        syscw: field("syscw:")?,
    })
}

/// What the daemon did over one window.
pub struct IdleWork {
    pub queued: u64,
    pub window: Duration,
    pub cpu_s: f64,
    pub write_bytes: u64,
    pub syscr: u64,
    pub syscw: u64,
    pub store_growth: i64,
    pub load: String,
}

impl IdleWork {
    pub fn line(&self) -> String {
        format!(
            "{} queued, campaign paused, over {:.0} s: CPU {:.2} s, write_bytes {:.1} KiB, syscr {}, syscw {}, store dir {:+.1} KiB ({})",
            self.queued,
            self.window.as_secs_f64(),
            self.cpu_s,
            self.write_bytes as f64 / 1024.0,
            self.syscr,
            self.syscw,
            self.store_growth as f64 / 1024.0,
            self.load
        )
    }
}

/// Pause the campaign through the admin API (`campaign pause`'s route).
pub fn pause(admin_port: u16, campaign: &str, bearer: &str) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let body = r#"{"reason":"bench: idle work with invitations queued"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin_port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST /campaigns/{campaign}/pause HTTP/1.1\r\nHost: 127.0.0.1:{admin_port}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    ensure!(
        out.starts_with("HTTP/1.1 200"),
        "pause refused: {}",
        out.lines().next().unwrap_or("")
    );
    Ok(())
}

/// Measure one window of `window` on the running daemon `pid`.
pub async fn measure(
    pid: u32,
    store: &Path,
    queued: u64,
    window: Duration,
) -> anyhow::Result<IdleWork> {
    let span = crate::load::Span::start();
    let cpu0 = crate::cpu_ticks(pid).context("daemon gone")?;
    let io0 = io(pid).context("no /proc/PID/io")?;
    let size0 = crate::walk_size(store) as i64;
    tokio::time::sleep(window).await;
    let cpu1 = crate::cpu_ticks(pid).context("daemon gone")?;
    let io1 = io(pid).context("daemon gone")?;
    Ok(IdleWork {
        queued,
        window,
        cpu_s: cpu1.saturating_sub(cpu0) as f64 / crate::ticks_per_sec(),
        write_bytes: io1.write_bytes.saturating_sub(io0.write_bytes),
        syscr: io1.syscr.saturating_sub(io0.syscr),
        syscw: io1.syscw.saturating_sub(io0.syscw),
        store_growth: crate::walk_size(store) as i64 - size0,
        load: span.end(),
    })
}
