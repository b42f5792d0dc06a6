//! Progress bars for CLI commands that take a while (`enqueue` of a large
//! file), shown only when stderr is a terminal; error lines printed while a
//! bar is drawn go above it.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// Files smaller than this get no bar (they are done before it would show).
const MIN_BYTES: u64 = 1024 * 1024;

/// A bar over `total` bytes, or none when stderr is not a terminal or the
/// file is small.
pub fn bytes_bar(total: u64, label: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || total < MIN_BYTES {
        return None;
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(label.to_string());
    Some(bar)
}

/// Writes to stderr above the bar (if any).
pub struct AboveBar<'a>(pub Option<&'a ProgressBar>);

impl Write for AboveBar<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0 {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
