//! Splitting one line of an intake file (invitees or readings) into its CSV
//! fields. The files are read a line at a time so a line's length is
//! capped before it is kept; each line is then split by one reader of
//! `csv-core`, built once per file and reset per line, with its buffers
//! kept: building a reader per line cost more than storing the row.

/// A reusable splitter for single CSV lines (quotes and doubled quotes
/// understood; a line holds one record).
pub(crate) struct CsvLine {
    reader: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for CsvLine {
    fn default() -> Self {
        Self {
            reader: csv_core::Reader::new(),
            out: vec![0; 512],
            ends: vec![0; 16],
        }
    }
}

impl CsvLine {
    /// The fields of `line` (no line ending); an empty line has none.
    pub(crate) fn fields(&mut self, line: &str) -> Vec<String> {
        use csv_core::ReadRecordResult as R;
        self.reader.reset();
        let mut input = line.as_bytes();
        let (mut out_len, mut ends_len) = (0, 0);
        loop {
            let (result, nin, nout, nend) = self.reader.read_record(
                input,
                &mut self.out[out_len..],
                &mut self.ends[ends_len..],
            );
            input = &input[nin..];
            out_len += nout;
            ends_len += nend;
            match result {
                // The line is all given; an empty input next tells the
                // reader it has ended.
                R::InputEmpty => {}
                R::OutputFull => self.out.resize(self.out.len() * 2, 0),
                R::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                R::Record => break,
                R::End => return Vec::new(),
            }
        }
        let mut start = 0;
        self.ends[..ends_len]
            .iter()
            .map(|&end| {
                // The input was UTF-8 and the reader removes only ASCII
                // quotes, so every field is UTF-8 too.
                let field = String::from_utf8_lossy(&self.out[start..end]).into_owned();
                start = end;
                field
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `csv` crate reads from the same line, for comparison.
    fn by_csv_crate(line: &str) -> Vec<String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(line.as_bytes());
        match reader.records().next() {
            Some(Ok(rec)) => rec.iter().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn splits_as_the_csv_crate_does_and_is_reused_across_lines() {
        let long = format!("\"{}\",b", "x,\"\"y".repeat(400));
        let lines = [
            "ann@example.com,Ann,MTR-1",
            "\"Cat, Jr\",\"say \"\"hi\"\"\",",
            "",
            "a",
            ",,",
            "é,ü,\"ß\"",
            long.as_str(),
            "\"unterminated,field",
            "one,two,three,four,five,six,seven,eight,nine,ten,eleven,twelve,thirteen,fourteen,fifteen,sixteen,seventeen,eighteen",
            "x,y",
        ];
        let mut split = CsvLine::default();
        for line in lines {
            assert_eq!(split.fields(line), by_csv_crate(line), "{line:?}");
        }
    }
}
