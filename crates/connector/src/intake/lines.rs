//! The line reader every intake shares (invitee files, readings files,
//! request bodies): streaming, with a cap on line length, so neither a
//! huge file nor a single 10 MB line makes memory grow; a line over the
//! cap is skipped to its end without being kept. Line numbers are the
//! input's own, blank lines included, and a CSV header is read the one
//! way (a byte order mark dropped, names trimmed and lowercased, none
//! empty or repeated).

use std::io::{BufRead, BufReader, Read};

use super::csv_line::CsvLine;
use super::row_error::MAX_LINE;

/// What the next line was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// Its text is in [`Lines::text`].
    Text,
    /// Longer than [`MAX_LINE`]: skipped.
    TooLong,
}

/// Why a CSV header cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("the file is empty")]
    Empty,
    #[error("not UTF-8")]
    NotUtf8,
    #[error("column {0:?} is empty or repeated")]
    Repeated(String),
}

pub(crate) struct Lines<R: Read> {
    input: BufReader<R>,
    line: u64,
    buf: Vec<u8>,
    split: CsvLine,
}

impl<R: Read> Lines<R> {
    pub(crate) fn new(input: R) -> Self {
        Lines {
            input: BufReader::with_capacity(64 * 1024, input),
            line: 0,
            buf: Vec::new(),
            split: Default::default(),
        }
    }

    /// The number of the line last read (1-based).
    pub(crate) fn number(&self) -> u64 {
        self.line
    }

    /// The text of the line last read, without its line ending.
    pub(crate) fn text(&self) -> &[u8] {
        &self.buf
    }

    /// The text of the line last read and the CSV splitter, apart.
    pub(crate) fn parts(&mut self) -> (&[u8], &mut CsvLine) {
        (&self.buf, &mut self.split)
    }

    /// Read the next line; `None` at the end of the input.
    pub(crate) fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let (mut any, mut too_long) = (false, false);
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
            if !too_long && self.buf.len() + take > MAX_LINE + 2 {
                too_long = true;
                self.buf.clear();
            } else if !too_long {
                self.buf.extend_from_slice(&chunk[..take]);
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
            return Ok(Some(Line::TooLong));
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        Ok(Some(Line::Text))
    }

    /// Read the first line as a CSV header: its column names.
    pub(crate) fn header(&mut self) -> Result<Vec<String>, HeaderError> {
        match self.next_line()? {
            Some(Line::Text) => {}
            Some(Line::TooLong) => return Err(HeaderError::TooLong),
            None => return Err(HeaderError::Empty),
        }
        let text = std::str::from_utf8(&self.buf).map_err(|_| HeaderError::NotUtf8)?;
        let fields: Vec<String> = self
            .split
            .fields(text.trim_start_matches('\u{feff}'))
            .iter()
            .map(|f| f.trim().to_ascii_lowercase())
            .collect();
        let mut seen = std::collections::HashSet::new();
        if let Some(f) = fields.iter().find(|f| f.is_empty() || !seen.insert(*f)) {
            return Err(HeaderError::Repeated(f.clone()));
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_numbers_and_a_long_one_is_skipped() {
        let input = format!("a\r\n\n{}\nb", "x".repeat(MAX_LINE + 10));
        let mut l = Lines::new(input.as_bytes());
        assert_eq!(l.next_line().unwrap(), Some(Line::Text));
        assert_eq!((l.number(), l.text()), (1, &b"a"[..]));
        assert_eq!(l.next_line().unwrap(), Some(Line::Text));
        assert_eq!((l.number(), l.text()), (2, &b""[..]));
        assert_eq!(l.next_line().unwrap(), Some(Line::TooLong));
        assert_eq!(l.next_line().unwrap(), Some(Line::Text));
        assert_eq!((l.number(), l.text()), (4, &b"b"[..]));
        assert_eq!(l.next_line().unwrap(), None);
    }

    #[test]
    fn a_header_is_read_one_way() {
        let mut l = Lines::new("\u{feff}Email, Name \nx,y\n".as_bytes());
        assert_eq!(l.header().unwrap(), ["email", "name"]);
        assert!(matches!(
            Lines::new("a,A\n".as_bytes()).header(),
            Err(HeaderError::Repeated(_))
        ));
        assert!(matches!(
            Lines::new("".as_bytes()).header(),
            Err(HeaderError::Empty)
        ));
    }
}
