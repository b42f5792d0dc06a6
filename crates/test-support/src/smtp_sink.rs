//! A minimal SMTP server, in process, that accepts every message and only
//! counts it: the fastest mail server the daemon could talk to, so the
//! benches (`pipeline`, `dkim`) print figures that are the daemon's own and
//! beside them the limit of the part around it. The tests use the real
//! server process (`smtp_server.py`) instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Start the sink on a free loopback port: its port, and the count of
/// messages it has accepted so far.
pub async fn start() -> std::io::Result<(u16, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(session(sock, c.clone()));
        }
    });
    Ok((port, count))
}

async fn session(sock: tokio::net::TcpStream, count: Arc<AtomicUsize>) {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    if w.write_all(b"220 sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut in_data = false;
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if in_data {
            if line == b".\r\n" {
                in_data = false;
                count.fetch_add(1, Ordering::Relaxed);
                if w.write_all(b"250 queued\r\n").await.is_err() {
                    return;
                }
            }
            continue;
        }
        let verb = String::from_utf8_lossy(&line[..line.len().min(4)]).to_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"250 ok\r\n",
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}
