//! Reading invitee files row by row: CSV with a header, or JSON Lines,
//! through the line reader every intake shares (`lines.rs`: a cap on line
//! length, the header read one way); each row is parsed into an `Invitee`
//! or a reason naming what was wrong.

use std::io::Read;
use std::path::Path;

use super::lines::{HeaderError, Line, Lines};
use super::row_error::RowError;
use crate::domain::Invitee;

pub use super::row_error::MAX_LINE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::JsonLines),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("the CSV header has no `email` column")]
    NoEmailColumn,
    #[error("the CSV header is empty or malformed: {0}")]
    BadHeader(String),
    #[error("the file name must end in .csv, .jsonl or .ndjson")]
    UnknownFormat,
}

/// One data row: its 1-based line number and what it parsed to.
pub struct Row {
    pub line: u64,
    pub result: Result<Invitee, RowError>,
}

pub struct Rows<R: Read> {
    lines: Lines<R>,
    format: Format,
    header: Vec<String>,
}

impl Rows<std::fs::File> {
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let format = Format::of(path).ok_or(FileError::UnknownFormat)?;
        Rows::new(std::fs::File::open(path)?, format)
    }
}

impl<R: Read> Rows<R> {
    pub fn new(input: R, format: Format) -> Result<Self, FileError> {
        let mut lines = Lines::new(input);
        let mut header = Vec::new();
        if format == Format::Csv {
            header = lines.header().map_err(|e| match e {
                HeaderError::Io(e) => FileError::Io(e),
                HeaderError::TooLong => FileError::BadHeader(RowError::TooLong.to_string()),
                other => FileError::BadHeader(other.to_string()),
            })?;
            if !header.iter().any(|f| f == "email") {
                return Err(FileError::NoEmailColumn);
            }
        }
        Ok(Rows {
            lines,
            format,
            header,
        })
    }

    fn parse_current(&mut self) -> Result<Invitee, RowError> {
        let (bytes, split) = self.lines.parts();
        let text = std::str::from_utf8(bytes).map_err(|_| RowError::NotUtf8)?;
        match self.format {
            Format::Csv => {
                let values = split.fields(text);
                if values.len() != self.header.len() {
                    return Err(RowError::FieldCount {
                        fields: values.len(),
                        header: self.header.len(),
                    });
                }
                Invitee::from_fields(self.header.iter().cloned().zip(values))
                    .map_err(RowError::Invitee)
            }
            Format::JsonLines => {
                let value = super::json_row::parse_row(text).map_err(RowError::NotJson)?;
                match value {
                    serde_json::Value::Object(map) => {
                        Invitee::from_json(map).map_err(RowError::Invitee)
                    }
                    _ => Err(RowError::NotObject),
                }
            }
        }
    }
}

impl<R: Read> Iterator for Rows<R> {
    type Item = Result<Row, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let result = match self.lines.next_line() {
                Err(e) => return Some(Err(FileError::Io(e))),
                Ok(None) => return None,
                Ok(Some(Line::TooLong)) => Err(RowError::TooLong),
                Ok(Some(Line::Text)) => {
                    if self.lines.text().iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    self.parse_current()
                }
            };
            return Some(Ok(Row {
                line: self.lines.number(),
                result,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row's rejection reason as its text, to compare.
    #[derive(Debug, PartialEq)]
    struct Reason(String);

    impl std::ops::Deref for Reason {
        type Target = str;
        fn deref(&self) -> &str {
            &self.0
        }
    }

    fn rows(input: &str, format: Format) -> Vec<(u64, Result<String, Reason>)> {
        Rows::new(input.as_bytes(), format)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (
                    r.line,
                    r.result
                        .map(|i| i.email.to_string())
                        .map_err(|e| Reason(e.to_string())),
                )
            })
            .collect()
    }

    #[test]
    fn csv_rows_with_bad_ones_named() {
        let input = "email,name,mydexid\r\nann@example.com,Ann,\nnot-an-email,Bob,\n\ncat@example.com,\"Cat, Jr\",12\nx@example.com,too,many,fields\n";
        let out = rows(input, Format::Csv);
        assert_eq!(out[0], (2, Ok("ann@example.com".into())));
        assert!(matches!(&out[1], (3, Err(e)) if e.contains("not a valid address")));
        assert!(matches!(&out[2], (5, Err(e)) if e.contains("numbers")));
        assert!(matches!(&out[3], (6, Err(e)) if e.contains("fields")));
    }

    #[test]
    fn header_must_have_email() {
        assert!(matches!(
            Rows::new("name\nAnn\n".as_bytes(), Format::Csv),
            Err(FileError::NoEmailColumn)
        ));
        assert!(matches!(
            Rows::new("".as_bytes(), Format::Csv),
            Err(FileError::BadHeader(_))
        ));
        assert!(matches!(
            Rows::new("email,email\n".as_bytes(), Format::Csv),
            Err(FileError::BadHeader(_))
        ));
    }

    #[test]
    fn a_huge_line_is_rejected_and_the_next_still_read() {
        let input = format!(
            "email,name\nann@example.com,{}\nbob@example.com,Bob\n",
            "x".repeat(10 * 1024 * 1024)
        );
        let out = rows(&input, Format::Csv);
        assert!(matches!(&out[0], (2, Err(e)) if e.contains("longer than")));
        assert_eq!(out[1], (3, Ok("bob@example.com".into())));
    }

    #[test]
    fn json_lines() {
        let input = "{\"email\":\"ann@example.com\",\"external_ref\":42}\n[1]\n{bad\n";
        let out = rows(input, Format::JsonLines);
        assert_eq!(out[0], (1, Ok("ann@example.com".into())));
        assert!(matches!(&out[1], (2, Err(e)) if e.contains("object")));
        assert!(matches!(&out[2], (3, Err(e)) if e.contains("JSON")));
    }
}
