//! The CLI's tables: plain columns with a header, sized to their content,
//! no borders and no colour codes (`comfy-table` without its terminal
//! feature), so they read the same on a terminal, in a pipe and in a log.

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ContentArrangement, Table};

/// A table with `header`; columns named in `right` are right-aligned
/// (counts).
pub fn new(header: &[&str], right: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    for (i, h) in header.iter().enumerate() {
        if right.contains(h)
            && let Some(c) = t.column_mut(i)
        {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

/// The table as lines without trailing blanks, indented by `indent`.
pub fn render(t: &Table, indent: &str) -> String {
    t.lines()
        .map(|l| format!("{indent}{}", l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}
