//! Reading invitee files row by row: CSV with a header, or JSON Lines.
//! Streaming with a cap on line length, so neither a huge file nor a single
//! 10 MB line makes memory grow; each row is parsed into an `Invitee` or a
//! reason naming what was wrong.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

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
    input: BufReader<R>,
    format: Format,
    header: Vec<String>,
    line: u64,
    buf: Vec<u8>,
    split: super::csv_line::CsvLine,
}

impl Rows<std::fs::File> {
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let format = Format::of(path).ok_or(FileError::UnknownFormat)?;
        Rows::new(std::fs::File::open(path)?, format)
    }
}

impl<R: Read> Rows<R> {
    pub fn new(input: R, format: Format) -> Result<Self, FileError> {
        let mut rows = Rows {
            input: BufReader::with_capacity(64 * 1024, input),
            format,
            header: Vec::new(),
            line: 0,
            buf: Vec::new(),
            split: Default::default(),
        };
        if format == Format::Csv {
            let header = match rows.next_line()? {
                Some(Ok(())) => std::str::from_utf8(&rows.buf)
                    .map_err(|_| FileError::BadHeader("not UTF-8".into()))?
                    .to_string(),
                Some(Err(reason)) => return Err(FileError::BadHeader(reason.to_string())),
                None => return Err(FileError::BadHeader("the file is empty".into())),
            };
            let header = header.trim_start_matches('\u{feff}');
            let fields = rows.split.fields(header);
            let fields: Vec<String> = fields
                .into_iter()
                .map(|f| f.trim().to_ascii_lowercase())
                .collect();
            let mut seen = std::collections::HashSet::new();
            for f in &fields {
                if f.is_empty() || !seen.insert(f.clone()) {
                    return Err(FileError::BadHeader(format!(
                        "column {f:?} is empty or repeated"
                    )));
                }
            }
            if !fields.iter().any(|f| f == "email") {
                return Err(FileError::NoEmailColumn);
            }
            rows.header = fields;
        }
        Ok(rows)
    }

    /// The next line into `buf`, without its line ending; `Err` when it was
    /// longer than `MAX_LINE` (then skipped to its end without keeping it).
    fn next_line(&mut self) -> std::io::Result<Option<Result<(), RowError>>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > MAX_LINE + 2 {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.input.consume(take);
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line += 1;
        if too_long {
            return Ok(Some(Err(RowError::TooLong)));
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some(Ok(())))
    }

    fn parse_current(&mut self) -> Result<Invitee, RowError> {
        let text = std::str::from_utf8(&self.buf).map_err(|_| RowError::NotUtf8)?;
        match self.format {
            Format::Csv => {
                let values = self.split.fields(text);
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
            match self.next_line() {
                Err(e) => return Some(Err(FileError::Io(e))),
                Ok(None) => return None,
                Ok(Some(Err(reason))) => {
                    return Some(Ok(Row {
                        line: self.line,
                        result: Err(reason),
                    }));
                }
                Ok(Some(Ok(()))) => {
                    if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    return Some(Ok(Row {
                        line: self.line,
                        result: self.parse_current(),
                    }));
                }
            }
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
