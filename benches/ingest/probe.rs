//! Admin API latency as an operator's monitoring sees it: a client on its
//! own thread polling `GET /status` (with the `Host` header a browser or
//! curl sends) while the daemon ingests and again after, beside `GET
//! /healthz`, which reads nothing from the store: the listener's own floor.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Latencies of the requests answered 200, and how many were not.
#[derive(Default)]
pub struct Samples {
    ok: Vec<Duration>,
    failed: usize,
}

impl Samples {
    /// The `p`-quantile (0..=1) in milliseconds; NaN without samples.
    pub fn ms(&self, p: f64) -> f64 {
        let mut v = self.ok.clone();
        v.sort();
        let i = ((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1));
        v.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }

    pub fn summary(&self) -> String {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} answered 200, {} not)",
            self.ms(0.50),
            self.ms(0.99),
            self.ms(1.0),
            self.ok.len(),
            self.failed
        )
    }
}

/// One GET; its latency if the answer was a 200 (read to the end).
fn get_once(port: u16, path: &str) -> Option<Duration> {
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let took = started.elapsed();
    let head = out.get(..12)?;
    (head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")).then_some(took)
}

fn record(samples: &mut Samples, port: u16, path: &str) {
    match get_once(port, path) {
        Some(d) => samples.ok.push(d),
        None => samples.failed += 1,
    }
}

/// `n` requests, `gap` apart, on this thread.
pub fn sample(port: u16, path: &str, n: usize, gap: Duration) -> Samples {
    let mut samples = Samples::default();
    for _ in 0..n {
        record(&mut samples, port, path);
        std::thread::sleep(gap);
    }
    samples
}

/// A client polling `path` every `gap` until [`Poller::finish`].
pub struct Poller {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Samples>,
}

impl Poller {
    pub fn start(port: u16, path: &'static str, gap: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut samples = Samples::default();
            while !flag.load(Ordering::Relaxed) {
                record(&mut samples, port, path);
                std::thread::sleep(gap);
            }
            samples
        });
        Self { stop, handle }
    }

    pub fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}
