//! The machine's load average, printed before and after each figure: the
//! benches run on small machines shared with other work, so a figure is read
//! with the load it was measured under, and beside a limit measured in the
//! same run (the ratio is what compares across runs).

/// The 1-minute load average (`/proc/loadavg`), or NaN where there is none.
pub fn now() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The load when a figure's measurement began.
#[derive(Clone, Copy)]
pub struct Span(f64);

impl Span {
    pub fn start() -> Self {
        Self(now())
    }

    /// "load 1.20 → 2.35": at the start and now.
    pub fn end(self) -> String {
        format!("load {:.2} → {:.2}", self.0, now())
    }
}
