//! Counters an operator watches (`/metrics`, Prometheus text format): Mydex
//! calls by endpoint and outcome with latency, emails, callbacks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

#[derive(Default)]
pub struct Metrics {
    pub emails_sent: AtomicU64,
    pub emails_failed: AtomicU64,
    pub emails_deferred: AtomicU64,
    mydex: Mutex<BTreeMap<(String, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    callbacks: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    pub fn mydex_call(&self, endpoint: &str, outcome: &str, elapsed: Duration) {
        if let Ok(mut m) = self.mydex.lock() {
            *m.entry((endpoint.to_string(), outcome.to_string()))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(endpoint.to_string()).or_default();
            let secs = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.total += 1;
        }
    }

    pub fn callback(&self, kind: &str, result: &str) {
        if let Ok(mut m) = self.callbacks.lock() {
            *m.entry((kind.to_string(), result.to_string())).or_default() += 1;
        }
    }

    /// Prometheus text exposition of what this process counted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out += "# TYPE mydex_connector_emails_total counter\n";
        for (result, v) in [
            ("sent", &self.emails_sent),
            ("failed", &self.emails_failed),
            ("deferred", &self.emails_deferred),
        ] {
            out += &format!(
                "mydex_connector_emails_total{{result=\"{result}\"}} {}\n",
                v.load(Ordering::Relaxed)
            );
        }
        out += "# TYPE mydex_connector_mydex_calls_total counter\n";
        if let Ok(m) = self.mydex.lock() {
            for ((e, o), v) in m.iter() {
                out += &format!(
                    "mydex_connector_mydex_calls_total{{endpoint=\"{}\",outcome=\"{}\"}} {v}\n",
                    esc(e),
                    esc(o)
                );
            }
        }
        out += "# TYPE mydex_connector_mydex_call_seconds histogram\n";
        if let Ok(l) = self.latency.lock() {
            for (e, h) in l.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    out += &format!(
                        "mydex_connector_mydex_call_seconds_bucket{{endpoint=\"{}\",le=\"{b}\"}} {}\n",
                        esc(e),
                        h.counts[i]
                    );
                }
                out += &format!(
                    "mydex_connector_mydex_call_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {}\n",
                    esc(e),
                    h.total
                );
                out += &format!(
                    "mydex_connector_mydex_call_seconds_sum{{endpoint=\"{}\"}} {}\n",
                    esc(e),
                    h.sum
                );
                out += &format!(
                    "mydex_connector_mydex_call_seconds_count{{endpoint=\"{}\"}} {}\n",
                    esc(e),
                    h.total
                );
            }
        }
        out += "# TYPE mydex_connector_callbacks_total counter\n";
        if let Ok(m) = self.callbacks.lock() {
            for ((k, r), v) in m.iter() {
                out += &format!(
                    "mydex_connector_callbacks_total{{type=\"{}\",result=\"{}\"}} {v}\n",
                    esc(k),
                    esc(r)
                );
            }
        }
        out
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
