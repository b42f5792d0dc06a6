//! Colour on the terminal, only where it helps (a paused campaign, a
//! failure) and only where it can be seen: never when stdout is not a
//! terminal, nor when `NO_COLOR` is set (https://no-color.org), nor on a
//! dumb terminal.

use std::io::IsTerminal;

use console::Style;

/// Whether stdout gets colour codes.
pub fn enabled() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    !no_color && !dumb && std::io::stdout().is_terminal()
}

fn styled(text: &str, style: Style) -> String {
    style.force_styling(enabled()).apply_to(text).to_string()
}

/// Something that needs the operator: PAUSED, a failure, a refusal.
pub fn alert(text: &str) -> String {
    styled(text, Style::new().red().bold())
}

/// Something that waits on its own: outside a send window, held.
pub fn waiting(text: &str) -> String {
    styled(text, Style::new().yellow())
}

/// All is well.
pub fn good(text: &str) -> String {
    styled(text, Style::new().green())
}

/// A heading.
pub fn heading(text: &str) -> String {
    styled(text, Style::new().bold())
}
