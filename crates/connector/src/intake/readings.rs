//! Readings files: `deliver` checks a file's rows and places the
//! good ones atomically in `delivery.dir` (as `enqueue` does for invitees);
//! the daemon watches that directory and stores each reading durably,
//! recording how far it got in the same transaction, so a crash neither
//! loses nor repeats one. Rows naming no known member or invitee are
//! written to `rejected/` with line and reason.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::ensure_dirs;
use super::error::with_causes;
use super::lines::{HeaderError, Line, Lines};
use super::origin::{self, LineKeeper, Origin, Refused};
use super::reader::Format;
use super::reject_sink::RejectSink;
use super::row_error::MAX_LINE;
use super::watched::open_regular;
use crate::config::{DeliverySettings, Settings};
use crate::domain::{IntakeVerdict, Reading, ReadingError, RowState};
use crate::store::{ReadingOutcome, ReadingPlacer, Store, StoreError};

const BATCH: usize = 500;

/// Why a readings file could not be taken in or placed.
#[derive(Debug, thiserror::Error)]
pub enum ReadingsError {
    #[error("delivery is not configured (no [delivery] section with delivery.dir)")]
    NotConfigured,
    /// A readings file in `delivery.dir` cannot be read (it is set aside,
    /// not retried).
    #[error("cannot read the file: {error}")]
    Unreadable {
        error: std::io::Error,
        /// The last line already stored (0: none).
        stored_through: u64,
    },
    #[error("{}: {why}", path.display())]
    Input { path: PathBuf, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Why one readings row (or a file's header) was rejected; the text is
/// what `rejected/`, `deliver` and `POST /records` say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowRejected {
    #[error("line is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("has {fields} fields, the header has {header}")]
    FieldCount { fields: usize, header: usize },
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Reading(#[from] ReadingError),
    #[error("the CSV header is empty or malformed: {0}")]
    BadHeader(String),
    #[error("cannot read: {0}")]
    Io(String),
    #[error("unknown member: no member or invitee with {column} {value:?}")]
    UnknownMember { column: &'static str, value: String },
}

/// What became of one readings file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadingsReport {
    pub queued: u64,
    pub held: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// Rows of a readings file: CSV with a header or JSON Lines, read by the
/// line reader every intake shares (`lines.rs`: each line at most
/// `MAX_LINE` bytes, a longer one skipped, not buffered).
pub struct ReadingRows<R: Read> {
    lines: Lines<R>,
    format: Format,
    header: Vec<String>,
}

impl<R: Read> ReadingRows<R> {
    pub fn new(input: R, format: Format) -> Result<Self, RowRejected> {
        let mut lines = Lines::new(input);
        let mut header = Vec::new();
        if format == Format::Csv {
            header = lines.header().map_err(|e| match e {
                HeaderError::Io(e) => RowRejected::Io(e.to_string()),
                other => RowRejected::BadHeader(other.to_string()),
            })?;
        }
        Ok(ReadingRows {
            lines,
            format,
            header,
        })
    }

    fn parse(&mut self) -> Result<Option<Reading>, RowRejected> {
        let number = self.lines.number();
        let (bytes, split) = self.lines.parts();
        let text = std::str::from_utf8(bytes).map_err(|_| RowRejected::NotUtf8)?;
        // A byte order mark may open a JSON Lines file, as it may a CSV one.
        let text = match number {
            1 => text.trim_start_matches('\u{feff}'),
            _ => text,
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        let reading = match self.format {
            Format::Csv => {
                let values = split.fields(text);
                if values.len() != self.header.len() {
                    return Err(RowRejected::FieldCount {
                        fields: values.len(),
                        header: self.header.len(),
                    });
                }
                let pairs = self.header.iter().map(String::as_str);
                Reading::from_fields(pairs.zip(values.iter().map(String::as_str)))
            }
            Format::JsonLines => {
                let v = super::json_row::parse_row(text)
                    .map_err(|e| RowRejected::NotJson(e.to_string()))?;
                Reading::from_json(&v)
            }
        };
        Ok(Some(reading?))
    }
}

impl<R: Read> Iterator for ReadingRows<R> {
    /// (line, the reading or why not); blank lines are skipped.
    type Item = std::io::Result<(u64, Result<Reading, RowRejected>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.lines.number() + 1;
            match self.lines.next_line() {
                Err(e) => return Some(Err(e)),
                Ok(None) => return None,
                Ok(Some(Line::TooLong)) => return Some(Ok((line, Err(RowRejected::TooLong)))),
                Ok(Some(Line::Text)) => match self.parse() {
                    Ok(None) => continue,
                    Ok(Some(r)) => return Some(Ok((line, Ok(r)))),
                    Err(why) => return Some(Ok((line, Err(why)))),
                },
            }
        }
    }
}

/// The delivery settings, or why there are none.
pub fn delivery(settings: &Settings) -> Result<&DeliverySettings, ReadingsError> {
    settings
        .delivery
        .as_ref()
        .ok_or(ReadingsError::NotConfigured)
}

/// `deliver`: check `path`, report bad rows (`FILE:LINE: reason`) and place
/// the good ones in `delivery.dir` atomically. Returns (good, bad).
pub fn deliver_file_with_progress(
    settings: &Settings,
    path: &Path,
    errors: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, u64), ReadingsError> {
    let p = deliver_file_placed(settings, path, errors, progress)?;
    Ok((p.good, p.bad))
}

/// `deliver_file_with_progress`, saying where the file was placed: the
/// copy keeps the input's line numbers and a note beside it names the
/// input and the rows refused here (`origin.rs`).
pub fn deliver_file_placed(
    settings: &Settings,
    path: &Path,
    errors: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<super::Placed, ReadingsError> {
    let dir = &delivery(settings)?.dir;
    ensure_dirs(dir)?;
    let input = |why: String| ReadingsError::Input {
        path: path.to_owned(),
        why,
    };
    let format = Format::of(path)
        .ok_or_else(|| input("the file name must end in .csv, .jsonl or .ndjson".into()))?;
    let file = std::fs::File::open(path).map_err(|e| input(format!("cannot read: {e}")))?;
    let rows = ReadingRows::new(
        super::Counting {
            inner: file,
            read: 0,
            progress,
        },
        format,
    )
    .map_err(|e| input(e.to_string()))?;
    let unique = format!(
        "{}-{}",
        crate::store::now_ms(),
        uuid::Uuid::new_v4().simple()
    );
    let name = format!("{unique}-readings.jsonl");
    let (tmp, dest) = (dir.join(format!(".{unique}.tmp")), dir.join(&name));
    // Readable by the daemon whoever runs `deliver`, as `enqueue` does.
    let created = std::fs::File::create(&tmp)?;
    super::owner::hand_to_dir_owner(&created, dir)?;
    let mut out = std::io::BufWriter::new(created);
    let mut keeper = LineKeeper::new();
    let mut emit = |line: u64, r: &Reading| keeper.put(&mut out, line, &flat(r));
    let (good, refused) = copy_readings(rows, path, &mut emit, errors)?;
    if good == 0 {
        // Not empty: a placed file of no bytes would wait to settle.
        out.write_all(b"\n")?;
    }
    let bad = refused.len() as u64;
    if good + bad > 0 {
        let note = Origin {
            file: path.display().to_string(),
            at_ms: crate::store::now_ms(),
            refused,
        };
        origin::write(dir, &name, &note)?;
    }
    super::finish_placing(out, &tmp, &dest, dir, good + bad > 0)?;
    if good + bad == 0 {
        return Err(input(
            "holds no readings (the file is empty or has only a header)".into(),
        ));
    }
    Ok(super::Placed {
        good,
        bad,
        name: Some(name),
    })
}

/// Each good reading to `emit` with its line number, each bad one to
/// `errors`; the good count and the rows refused.
fn copy_readings<R: Read>(
    rows: ReadingRows<R>,
    path: &Path,
    emit: &mut dyn FnMut(u64, &Reading) -> std::io::Result<()>,
    errors: &mut dyn Write,
) -> Result<(u64, Vec<Refused>), ReadingsError> {
    let mut good = 0u64;
    let mut refused = Vec::new();
    for row in rows {
        let (line, result) = row?;
        match result {
            Ok(r) => {
                emit(line, &r)?;
                good += 1;
            }
            Err(why) => {
                writeln!(errors, "{}:{line}: {why}", path.display())?;
                refused.push(Refused {
                    line,
                    reason: why.to_string(),
                });
            }
        }
    }
    Ok((good, refused))
}

/// `deliver --nats`: the rows of `path` checked exactly as `deliver`
/// checks them; the refused ones reported to `errors` and returned, the
/// good ones returned as the flat objects to publish.
pub fn checked_readings(
    path: &Path,
    errors: &mut dyn Write,
) -> Result<(Vec<super::CheckedRow>, Vec<Refused>), ReadingsError> {
    let input = |why: String| ReadingsError::Input {
        path: path.to_owned(),
        why,
    };
    let format = Format::of(path)
        .ok_or_else(|| input("the file name must end in .csv, .jsonl or .ndjson".into()))?;
    let file = std::fs::File::open(path).map_err(|e| input(format!("cannot read: {e}")))?;
    let rows = ReadingRows::new(file, format).map_err(|e| input(e.to_string()))?;
    let mut good = Vec::new();
    let mut emit = |line: u64, r: &Reading| {
        good.push((line, flat(r)));
        Ok(())
    };
    let (_, refused) = copy_readings(rows, path, &mut emit, errors)?;
    Ok((good, refused))
}

/// A reading as one flat JSON object, the form the daemon reads back.
pub fn flat(r: &Reading) -> serde_json::Map<String, serde_json::Value> {
    let mut m: serde_json::Map<String, serde_json::Value> = r
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let (col, v) = match &r.member {
        crate::domain::MemberRef::ExternalRef(v) => ("external_ref", v),
        crate::domain::MemberRef::MydexId(v) => ("mydexid", v),
        crate::domain::MemberRef::ConnectionId(v) => ("connection_id", v),
    };
    m.insert(col.into(), v.clone().into());
    m.insert("external_id".into(), r.external_id.clone().into());
    if let Some(ds) = &r.dataset {
        m.insert("dataset".into(), ds.as_str().into());
    }
    m
}

/// One reading checked against the store: stored (queued or held) or the
/// reason it was not.
pub async fn place_readings(
    store: &Store,
    settings: &DeliverySettings,
    rows: Vec<(String, Reading)>,
    progress: Option<(String, u64)>,
) -> Result<Vec<Result<ReadingOutcome, RowRejected>>, StoreError> {
    let mut placer = ReadingPlacer::default();
    place_readings_with(store, &mut placer, settings, rows, progress).await
}

/// `place_readings` with a placer kept for a whole file: members (and
/// the external_ref and invitee maps) are read once a file, not once a
/// chunk of rows.
pub async fn place_readings_with(
    store: &Store,
    placer: &mut ReadingPlacer,
    settings: &DeliverySettings,
    rows: Vec<(String, Reading)>,
    progress: Option<(String, u64)>,
) -> Result<Vec<Result<ReadingOutcome, RowRejected>>, StoreError> {
    let mut unknown = Vec::with_capacity(rows.len());
    let mut items = Vec::with_capacity(rows.len());
    for (source, reading) in rows {
        unknown.push(RowRejected::UnknownMember {
            column: reading.member.column(),
            value: member_text(&reading).to_string(),
        });
        let dataset = reading
            .dataset
            .clone()
            .unwrap_or_else(|| settings.dataset.clone());
        items.push((source, reading, dataset));
    }
    let placed = store.place_readings(placer, items, progress).await?;
    Ok(placed
        .into_iter()
        .zip(unknown)
        .map(|(outcome, why)| outcome.ok_or(why))
        .collect())
}

fn member_text(r: &Reading) -> &str {
    match &r.member {
        crate::domain::MemberRef::ExternalRef(v)
        | crate::domain::MemberRef::MydexId(v)
        | crate::domain::MemberRef::ConnectionId(v) => v,
    }
}

/// Store every reading of `path`, resuming after the last stored line.
pub async fn ingest_readings_file(
    store: &Store,
    settings: &DeliverySettings,
    path: &Path,
) -> Result<ReadingsReport, ReadingsError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let origin = origin::read(dir, &name);
    let shown = origin.as_ref().map_or(name.as_str(), |o| o.file.as_str());
    let mut rejects = RejectSink::new(dir, &name, shown);
    let mut report = ReadingsReport::default();
    let resume_after = store.readings_progress(&name).await?.unwrap_or(0);
    let format = Format::of(path).unwrap_or(Format::JsonLines);
    let unreadable = |error, stored_through| ReadingsError::Unreadable {
        error,
        stored_through,
    };
    let file = open_regular(path).map_err(|e| unreadable(e, resume_after))?;
    match ReadingRows::new(file, format) {
        Err(RowRejected::Io(e)) => {
            return Err(unreadable(std::io::Error::other(e), resume_after));
        }
        Err(why) => {
            rejects.write(1, &why.to_string())?;
            report.rejected += 1;
        }
        Ok(rows) => {
            let at = (name.as_str(), resume_after);
            store_file_rows(store, settings, at, rows, &mut report, &mut rejects).await?;
        }
    }
    finish_readings_file(store, &name, origin, rejects, &mut report).await?;
    std::fs::rename(path, dir.join("done").join(&name))?;
    store.clear_readings_progress(&name).await?;
    origin::remove(dir, &name);
    tracing::info!(file = %name, queued = report.queued, held = report.held, duplicates = report.duplicates, rejected = report.rejected, "readings file ingested");
    Ok(report)
}

/// The end of a readings file before it leaves `delivery.dir`: the rows
/// `deliver` refused kept beside the daemon's own, the verdict
/// `deliver --wait` asks for, everything durable.
async fn finish_readings_file(
    store: &Store,
    name: &str,
    origin: Option<Origin>,
    mut rejects: RejectSink,
    report: &mut ReadingsReport,
) -> Result<(), ReadingsError> {
    if let Some(o) = &origin {
        for r in &o.refused {
            rejects.note(o.at_ms, r.line, &r.reason);
        }
        report.rejected += o.refused.len() as u64;
    }
    rejects.keep(store).await?;
    let verdict = IntakeVerdict {
        file: rejects.file().to_owned(),
        stored: report.queued + report.held,
        held: report.held,
        duplicates: report.duplicates,
        rejected: report.rejected,
        at: crate::domain::rfc3339(crate::store::now_ms()),
    };
    rejects.finish()?;
    store.record_verdict(name.to_owned(), verdict).await?;
    store.flush().await?;
    Ok(())
}

/// Store the rows of an open readings file after line `resume_after`, in
/// batches read off the runtime; bad rows go to `rejects`.
async fn store_file_rows(
    store: &Store,
    settings: &DeliverySettings,
    (name, resume_after): (&str, u64),
    rows: ReadingRows<std::fs::File>,
    report: &mut ReadingsReport,
    rejects: &mut RejectSink,
) -> Result<(), ReadingsError> {
    let mut placer = ReadingPlacer::default();
    let mut pending = Vec::with_capacity(BATCH);
    let mut last = resume_after;
    let mut stored_through = resume_after;
    let mut chunks = super::chunks::read_in_chunks(rows, BATCH);
    while let Some(chunk) = chunks.recv().await {
        for row in chunk {
            let (line, result) = row.map_err(|error| ReadingsError::Unreadable {
                error,
                stored_through,
            })?;
            if line <= resume_after {
                continue;
            }
            last = line;
            match result {
                Ok(r) => pending.push((line, r)),
                Err(why) => {
                    rejects.write(line, &why.to_string())?;
                    report.rejected += 1;
                }
            }
            if pending.len() >= BATCH {
                let at = (name, last);
                let with = (store, &mut placer);
                store_rows(with, settings, at, &mut pending, report, rejects).await?;
                rejects.keep(store).await?;
                stored_through = last;
            }
        }
    }
    let at = (name, last);
    store_rows(
        (store, &mut placer),
        settings,
        at,
        &mut pending,
        report,
        rejects,
    )
    .await?;
    rejects.keep(store).await?;
    Ok(())
}

pub(super) async fn store_rows(
    (store, placer): (&Store, &mut ReadingPlacer),
    settings: &DeliverySettings,
    (name, last): (&str, u64),
    pending: &mut Vec<(u64, Reading)>,
    report: &mut ReadingsReport,
    rejects: &mut RejectSink,
) -> Result<(), ReadingsError> {
    let lines: Vec<u64> = pending.iter().map(|(line, _)| *line).collect();
    let rows: Vec<(String, Reading)> = pending
        .drain(..)
        .map(|(line, r)| (format!("{name}:{line}"), r))
        .collect();
    let progress = Some((name.to_owned(), last));
    let outcomes = place_readings_with(store, placer, settings, rows, progress).await?;
    for (line, outcome) in lines.into_iter().zip(outcomes) {
        match outcome {
            Ok(ReadingOutcome::Stored {
                state: RowState::Held,
                ..
            }) => report.held += 1,
            Ok(ReadingOutcome::Stored { .. }) => report.queued += 1,
            Ok(ReadingOutcome::Duplicate(id)) => {
                report.duplicates += 1;
                rejects.write(line, &format!("duplicate of reading {id} (same member, dataset and external_id); not sent twice"))?;
            }
            Err(why) => {
                report.rejected += 1;
                rejects.write(line, &why.to_string())?;
            }
        }
    }
    Ok(())
}

/// Readings files, as `delivery.dir` takes them in.
struct ReadingsFiles {
    delivery: DeliverySettings,
}

impl super::FileKind for ReadingsFiles {
    const WHAT: &'static str = "readings";

    async fn ingest(&self, store: &Store, path: &Path) -> Result<(), super::Failure> {
        use super::Failure;
        match ingest_readings_file(store, &self.delivery, path).await {
            Ok(_) => Ok(()),
            Err(ReadingsError::Unreadable {
                error,
                stored_through,
            }) => Err(Failure::Unreadable {
                error,
                stored_through,
            }),
            Err(ReadingsError::Store(se)) => {
                let message = with_causes(&se);
                Err(Failure::Store(se, message))
            }
            Err(e) => Err(Failure::Other(with_causes(&e))),
        }
    }

    async fn begun(&self, store: &Store, names: Vec<String>) -> Result<Vec<String>, StoreError> {
        store.readings_begun(names).await
    }
}

/// Watch `delivery.dir` and take readings files in until cancelled, each
/// once it is whole (see `settle.rs`); one that can never be read is set
/// aside into `rejected/` (`dir_source.rs`). Wake the delivery worker
/// after each.
pub async fn run_readings(
    store: Store,
    settings: Arc<Settings>,
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let Some(delivery) = settings.delivery.clone() else {
        return;
    };
    let at = super::Watch {
        dir: &delivery.dir,
        settle: delivery.file_settle,
        poll: settings.queue.poll_interval,
    };
    let kind = ReadingsFiles {
        delivery: delivery.clone(),
    };
    super::dir_source::run(kind, at, store, wake, shutdown).await
}
