//! Every configuration problem of one load, printed for the operator (by
//! `check-config`, by `run` before it refuses to start, by any command
//! whose configuration does not load): one line each, the place first (the
//! file and line, or the environment variable) so an editor or a terminal
//! can jump to it, then the key, then what is wrong. Colour only on a
//! terminal, and never with `NO_COLOR` (anstream decides).

use std::io::Write;

use anstyle::{AnsiColor, Style};
use mydex_connector::config::ConfigErrors;

const ERROR: Style = Style::new()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)))
    .bold();
const KEY: Style = Style::new().bold();
const PLACE: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Cyan)));

/// Print the report on standard error.
pub fn print(report: &ConfigErrors) {
    let mut err = anstream::stderr().lock();
    let n = report.problems.len();
    let count = match n {
        1 => "1 problem".to_string(),
        n => format!("{n} problems"),
    };
    let _ = writeln!(
        err,
        "{ERROR}error{ERROR:#}: the configuration {} has {count}:",
        report.file
    );
    for p in &report.problems {
        let _ = writeln!(
            err,
            "  {PLACE}{}{PLACE:#}: {KEY}`{}`{KEY:#}: {}",
            p.origin, p.key, p.message
        );
    }
}
