//! The queue directory: `enqueue` validates files and places them atomically
//! (write, then rename); the daemon watches the directory, stores every good
//! row (in batches, recording how far it got in the same transaction, so a
//! crash neither loses nor repeats a row), writes bad rows to `rejected/`
//! with line and reason, and moves the file to `done/` only at the end.

mod chunks;
mod csv_line;
mod dir_source;
pub mod erase;
mod error;
pub(crate) mod json_row;
mod lines;
pub mod message_source;
mod origin;
mod owner;
pub mod precheck;
pub mod reader;
pub mod reading_message;
pub mod readings;
mod reject_sink;
mod rejected;
mod row_error;
mod settle;
mod watched;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::{IntakeVerdict, Invitee};
use crate::store::{InsertOutcome, Kind, NewInvitation, Store};
pub(crate) use dir_source::{Failure, FileKind, Watch};
pub use error::{EnqueueError, IngestError};
pub use origin::{Origin, Refused};
pub use reader::{FileError, Format, Rows};
use reject_sink::RejectSink;
pub use rejected::Refusal;
pub use row_error::RowError;

/// Rows stored per transaction: each batch costs one transaction, one
/// counters update and one progress mark, whatever its size.
const BATCH: usize = 1_000;

/// What became of one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// Files waiting in the queue directory, oldest name first.
pub fn pending_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !entry.file_type()?.is_file() {
            continue;
        }
        let path = entry.path();
        if Format::of(&path).is_some() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub fn ensure_dirs(dir: &Path) -> std::io::Result<()> {
    for sub in ["", "done", "rejected"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// Store every row of `path`, resuming after the last stored line.
pub async fn ingest_file(
    store: &Store,
    settings: &Settings,
    path: &Path,
) -> Result<FileReport, IngestError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let origin = origin::read(dir, &name);
    let shown = origin.as_ref().map_or(name.as_str(), |o| o.file.as_str());
    let mut rejects = RejectSink::new(dir, &name, shown);
    let mut report = FileReport::default();

    let resume_after = store.intake_progress(&name).await?.unwrap_or(0);
    if resume_after > 0 {
        tracing::info!(file = %name, line = resume_after, "resuming a queue file after its last stored line");
    }
    let unreadable = |error, stored_through| IngestError::Unreadable {
        error,
        stored_through,
    };
    let file = watched::open_regular(path).map_err(|e| unreadable(e, resume_after))?;
    let format = Format::of(path).ok_or(FileError::UnknownFormat);
    match format.and_then(|f| Rows::new(file, f)) {
        Err(FileError::Io(e)) => return Err(unreadable(e, resume_after)),
        Err(e) => {
            rejects.write(1, &e.to_string())?;
            report.rejected += 1;
        }
        Ok(rows) => {
            store_rows(
                store,
                settings,
                rows,
                resume_after,
                &mut report,
                &mut rejects,
            )
            .await?;
        }
    }
    finish_file(store, &name, origin, rejects, &mut report).await?;
    std::fs::rename(path, dir.join("done").join(&name))?;
    store.clear_intake_progress(&name).await?;
    origin::remove(dir, &name);
    tracing::info!(file = %name, stored = report.stored, duplicates = report.duplicates, rejected = report.rejected, "queue file ingested");
    Ok(report)
}

/// The end of a queue file before it leaves the queue: the rows `enqueue`
/// refused kept beside the daemon's own, the verdict `enqueue --wait`
/// asks for, everything durable.
async fn finish_file(
    store: &Store,
    name: &str,
    origin: Option<Origin>,
    mut rejects: RejectSink,
    report: &mut FileReport,
) -> Result<(), IngestError> {
    if let Some(o) = &origin {
        for r in &o.refused {
            rejects.note(o.at_ms, r.line, &r.reason);
        }
        report.rejected += o.refused.len() as u64;
    }
    rejects.keep(store).await?;
    let verdict = IntakeVerdict {
        file: rejects.file().to_owned(),
        stored: report.stored,
        held: 0,
        duplicates: report.duplicates,
        rejected: report.rejected,
        at: crate::domain::rfc3339(crate::store::now_ms()),
    };
    rejects.finish()?;
    store.record_verdict(name.to_owned(), verdict).await?;
    // Rows are durable before the file leaves the queue.
    store.flush().await?;
    Ok(())
}

/// Store the rows of an open queue file after line `resume_after`, in
/// batches; bad rows go to `rejects`.
async fn store_rows(
    store: &Store,
    settings: &Settings,
    rows: Rows<std::fs::File>,
    resume_after: u64,
    report: &mut FileReport,
    rejects: &mut RejectSink,
) -> Result<(), IngestError> {
    let name = rejects.source().to_owned();
    let mut batch: Vec<(u64, NewInvitation)> = Vec::with_capacity(BATCH);
    let mut last_line = resume_after;
    let mut stored_through = resume_after;
    let mut chunks = chunks::read_in_chunks(rows, BATCH);
    while let Some(chunk) = chunks.recv().await {
        for row in chunk {
            let row = match row {
                Ok(row) => row,
                Err(FileError::Io(error)) => {
                    return Err(IngestError::Unreadable {
                        error,
                        stored_through,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            if row.line <= resume_after {
                continue;
            }
            last_line = row.line;
            match row.result.and_then(|inv| to_new(settings, inv)) {
                Ok(new) => batch.push((row.line, new)),
                Err(reason) => {
                    rejects.write(row.line, &reason.to_string())?;
                    report.rejected += 1;
                }
            }
            if batch.len() >= BATCH {
                store_batch(store, &name, &mut batch, Some(last_line), report, rejects).await?;
                rejects.keep(store).await?;
                stored_through = last_line;
            }
        }
    }
    store_batch(store, &name, &mut batch, Some(last_line), report, rejects).await?;
    rejects.keep(store).await?;
    Ok(())
}

/// Store a batch of rows (recording the file's progress, if any, in the
/// same transaction); duplicates and suppressed people to `rejects`.
async fn store_batch(
    store: &Store,
    name: &str,
    batch: &mut Vec<(u64, NewInvitation)>,
    progress: Option<u64>,
    report: &mut FileReport,
    rejects: &mut RejectSink,
) -> Result<(), IngestError> {
    let (lines, items): (Vec<u64>, Vec<NewInvitation>) = batch.drain(..).unzip();
    let last_line = progress.unwrap_or_else(|| lines.last().copied().unwrap_or(0));
    let outcomes = store
        .insert_invitations(items, progress.map(|l| (name.to_owned(), l)))
        .await?;
    let mut ids = (u64::MAX, 0u64, 0u64);
    for (line, (item, outcome)) in lines.iter().zip(outcomes) {
        match outcome {
            InsertOutcome::Inserted(id) => {
                report.stored += 1;
                ids = (ids.0.min(id), ids.1.max(id), ids.2 + 1);
                // One line a person only at debug: at info, a national
                // file wrote a quarter of a kilobyte of log for every row.
                tracing::debug!(invitation = id, campaign = %item.campaign, external_ref = item.invitee.external_ref.as_deref().unwrap_or(""), state = "queued", "invitation queued");
            }
            InsertOutcome::Duplicate(id) => {
                report.duplicates += 1;
                rejects.write(*line, &format!("duplicate: {} already has an open invitation ({id}) in campaign {:?}; not invited twice", item.invitee.email, item.campaign))?;
            }
            InsertOutcome::Suppressed(source) => {
                report.rejected += 1;
                rejects.write(*line, &format!("suppressed: {}", source.as_str()))?;
            }
        }
    }
    if ids.2 > 0 {
        tracing::info!(
            file = name,
            through_line = last_line,
            queued = ids.2,
            first_invitation = ids.0,
            last_invitation = ids.1,
            "invitations queued"
        );
    }
    Ok(())
}

/// Turn a parsed invitee into a new invitation for its campaign.
pub fn to_new(settings: &Settings, invitee: Invitee) -> Result<NewInvitation, RowError> {
    let campaign = match &invitee.campaign {
        Some(name) => settings
            .campaign(name)
            .ok_or_else(|| RowError::UnknownCampaign(name.clone()))?,
        None => settings.default_campaign(),
    };
    // A campaign that identifies first asks for the MydexID of invitees
    // whose MydexID we do not know yet.
    let kind = if campaign.identify_first && invitee.mydexid.is_none() {
        Kind::Identify
    } else {
        Kind::Connect
    };
    let campaign = campaign.name.clone();
    Ok(NewInvitation {
        campaign,
        kind,
        version: settings.mydex.connection_version,
        invitee,
    })
}

/// Invitee files, as the queue directory takes them in.
struct QueueFiles {
    settings: Arc<Settings>,
}

impl dir_source::FileKind for QueueFiles {
    const WHAT: &'static str = "queue";

    async fn ingest(&self, store: &Store, path: &Path) -> Result<(), dir_source::Failure> {
        use dir_source::Failure;
        match ingest_file(store, &self.settings, path).await {
            Ok(_) => Ok(()),
            Err(IngestError::Unreadable {
                error,
                stored_through,
            }) => Err(Failure::Unreadable {
                error,
                stored_through,
            }),
            Err(IngestError::Store(se)) => {
                let message = error::with_causes(&se);
                Err(Failure::Store(se, message))
            }
            Err(e) => Err(Failure::Other(error::with_causes(&e))),
        }
    }

    async fn begun(
        &self,
        store: &Store,
        names: Vec<String>,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        store.intake_begun(names).await
    }
}

/// Watch the queue directory and ingest files until cancelled: each file
/// once it is whole (see `settle.rs`); one that can never be read is set
/// aside into `rejected/` (`dir_source.rs`).
pub async fn run(
    store: Store,
    settings: Arc<Settings>,
    wake_dispatcher: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let dir = settings.queue.dir.clone();
    let at = dir_source::Watch {
        dir: &dir,
        settle: settings.queue.settle,
        poll: settings.queue.poll_interval,
    };
    let kind = QueueFiles {
        settings: settings.clone(),
    };
    dir_source::run(kind, at, store, wake_dispatcher, shutdown).await
}

/// `enqueue`: validate `path`, report bad rows, and place the good ones in
/// the queue directory atomically. Returns (good, bad) counts.
pub fn enqueue_file(
    settings: &Settings,
    path: &Path,
    campaign: Option<&str>,
    errors: &mut dyn Write,
) -> Result<(u64, u64), EnqueueError> {
    enqueue_file_with_progress(settings, path, campaign, errors, &mut |_| {}, None)
}

/// What placing one file did: its good and bad rows, and the name it was
/// placed under (none when it held no row at all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    pub good: u64,
    pub bad: u64,
    pub name: Option<String>,
}

/// A reader that reports how many bytes it has read so far.
pub(crate) struct Counting<'a, R> {
    pub(crate) inner: R,
    pub(crate) read: u64,
    pub(crate) progress: &'a mut dyn FnMut(u64),
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.progress)(self.read);
        Ok(n)
    }
}

/// `enqueue_file`, calling `progress` with the bytes of `path` read so far.
pub fn enqueue_file_with_progress(
    settings: &Settings,
    path: &Path,
    campaign: Option<&str>,
    errors: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
    check: Option<&mut dyn precheck::SuppressionCheck>,
) -> Result<(u64, u64), EnqueueError> {
    let p = enqueue_file_placed(settings, path, campaign, errors, progress, check)?;
    Ok((p.good, p.bad))
}

/// `enqueue_file_with_progress`, saying where the file was placed. The
/// placed copy keeps the input's line numbers, and a note beside it names
/// the input and the rows refused here (`origin.rs`), so the daemon's
/// rejects name the operator's file and lines.
pub fn enqueue_file_placed(
    settings: &Settings,
    path: &Path,
    campaign: Option<&str>,
    errors: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
    check: Option<&mut dyn precheck::SuppressionCheck>,
) -> Result<Placed, EnqueueError> {
    let dir = &settings.queue.dir;
    ensure_dirs(dir)?;
    if let Some(c) = campaign
        && settings.campaign(c).is_none()
    {
        return Err(EnqueueError::UnknownCampaign(c.to_string()));
    }
    let rows = open_input(path, progress)?;
    let (tmp, final_path) = queue_names(dir, path);
    let created = std::fs::File::create(&tmp)?;
    owner::hand_to_dir_owner(&created, dir)?;
    let mut out = std::io::BufWriter::new(created);
    let mut keeper = origin::LineKeeper::new();
    let mut emit = |line: u64, inv: &Invitee| keeper.put(&mut out, line, &flatten(inv));
    let (good, refused) = check_rows(settings, path, campaign, rows, &mut emit, errors, check)?;
    if good == 0 {
        // Not empty: a placed file of no bytes would wait to settle.
        out.write_all(b"\n")?;
    }
    let bad = refused.len() as u64;
    let keep = good + bad > 0;
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|_| keep);
    if let Some(name) = &name {
        let note = Origin {
            file: path.display().to_string(),
            at_ms: crate::store::now_ms(),
            refused,
        };
        origin::write(dir, name, &note)?;
    }
    finish_placing(out, &tmp, &final_path, dir, keep)?;
    Ok(Placed { good, bad, name })
}

/// One good row of an input file, as `enqueue --nats` publishes it: its
/// line and the flat JSON object the queue reads.
pub type CheckedRow = (u64, serde_json::Map<String, serde_json::Value>);

/// `enqueue --nats`: the rows of `path` checked exactly as `enqueue`
/// checks them (the campaign, the suppression list when `check` answers);
/// the refused ones reported to `errors` and returned, the good ones
/// returned as the objects to publish.
pub fn checked_rows(
    settings: &Settings,
    path: &Path,
    campaign: Option<&str>,
    errors: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
    check: Option<&mut dyn precheck::SuppressionCheck>,
) -> Result<(Vec<CheckedRow>, Vec<Refused>), EnqueueError> {
    if let Some(c) = campaign
        && settings.campaign(c).is_none()
    {
        return Err(EnqueueError::UnknownCampaign(c.to_string()));
    }
    let rows = open_input(path, progress)?;
    let mut good = Vec::new();
    let mut emit = |line: u64, inv: &Invitee| {
        good.push((line, flatten(inv)));
        Ok(())
    };
    let (_, refused) = check_rows(settings, path, campaign, rows, &mut emit, errors, check)?;
    Ok((good, refused))
}

/// The end of placing a file in a watched directory (queue or readings):
/// the temporary file made durable, then renamed into `dir` (and the
/// directory synced) when it holds rows, removed when it holds none.
pub(crate) fn finish_placing(
    out: std::io::BufWriter<std::fs::File>,
    tmp: &Path,
    dest: &Path,
    dir: &Path,
    keep: bool,
) -> std::io::Result<()> {
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    if !keep {
        return std::fs::remove_file(tmp);
    }
    std::fs::rename(tmp, dest)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The rows of the input file, counting the bytes read for `progress`.
fn open_input<'a>(
    path: &Path,
    progress: &'a mut dyn FnMut(u64),
) -> Result<Rows<Counting<'a, std::fs::File>>, EnqueueError> {
    let input = |error| EnqueueError::Input {
        path: path.to_owned(),
        error,
    };
    let format = Format::of(path).ok_or_else(|| input(FileError::UnknownFormat))?;
    let file = std::fs::File::open(path).map_err(|e| input(FileError::Io(e)))?;
    let counting = Counting {
        inner: file,
        read: 0,
        progress,
    };
    Rows::new(counting, format).map_err(input)
}

/// The temporary and final names in the queue directory of a file made
/// from `path`: unique, and with the input's (sanitised) name in them.
fn queue_names(dir: &Path, path: &Path) -> (PathBuf, PathBuf) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "invitees".into());
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let unique = format!(
        "{}-{}",
        crate::store::now_ms(),
        uuid::Uuid::new_v4().simple()
    );
    (
        dir.join(format!(".{unique}-{stem}.tmp")),
        dir.join(format!("{unique}-{stem}.jsonl")),
    )
}

/// Write each good row to `out` as JSON Lines, on its own line number
/// (`origin::LineKeeper`), and each bad one to `errors` with its line and
/// reason. Returns the good count and the rows refused.
fn check_rows<R: std::io::Read>(
    settings: &Settings,
    path: &Path,
    campaign: Option<&str>,
    rows: Rows<R>,
    emit: &mut dyn FnMut(u64, &Invitee) -> std::io::Result<()>,
    errors: &mut dyn Write,
    check: Option<&mut dyn precheck::SuppressionCheck>,
) -> Result<(u64, Vec<Refused>), EnqueueError> {
    let mut refused = Vec::new();
    let mut sink = precheck::Checked::new(errors, path, check);
    let mut write = |rows: Vec<(u64, Invitee)>| -> std::io::Result<()> {
        for (line, inv) in rows {
            emit(line, &inv)?;
        }
        Ok(())
    };
    for row in rows {
        let row = row?;
        let checked = row.result.and_then(|mut inv| {
            if inv.campaign.is_none() {
                inv.campaign = campaign.map(str::to_string);
            }
            to_new(settings, inv.clone()).map(|_| inv)
        });
        match checked {
            Ok(inv) => write(sink.push(row.line, inv)?)?,
            Err(reason) => {
                writeln!(sink.errors(), "{}:{}: {reason}", path.display(), row.line)?;
                refused.push(Refused {
                    line: row.line,
                    reason: reason.to_string(),
                });
            }
        }
    }
    write(sink.flush()?)?;
    refused.extend(
        sink.refused
            .drain(..)
            .map(|(line, reason)| Refused { line, reason }),
    );
    refused.sort_by_key(|r| r.line);
    Ok((sink.good, refused))
}

/// An invitee as one flat JSON object, the form the queue reads back.
fn flatten(inv: &Invitee) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (k, v) in &inv.vars {
        m.insert(k.clone(), v.clone().into());
    }
    m.insert("email".into(), inv.email.to_string().into());
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), v.clone().into());
        }
    };
    put("name", &inv.name);
    put("external_ref", &inv.external_ref);
    put("mydexid", &inv.mydexid.as_ref().map(|m| m.to_string()));
    put("campaign", &inv.campaign);
    m
}
