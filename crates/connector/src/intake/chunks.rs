//! Reading an intake file off the runtime: its rows are read and parsed
//! on a blocking thread (file work, never the store) and handed over in
//! chunks through a bounded channel, so the async side stores them through
//! the store's facade with at most a few chunks in memory.

use tokio::sync::mpsc;

/// Chunks handed over ahead of the one being stored.
const AHEAD: usize = 2;

/// The items of `rows`, `chunk` at a time, read on a blocking thread.
/// Reading stops when the receiver is dropped.
pub(crate) fn read_in_chunks<I, T>(rows: I, chunk: usize) -> mpsc::Receiver<Vec<T>>
where
    I: Iterator<Item = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel(AHEAD);
    // Not the store: reading and parsing a file.
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(chunk);
        for item in rows {
            buf.push(item);
            if buf.len() >= chunk {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(chunk));
                if tx.blocking_send(full).is_err() {
                    return;
                }
            }
        }
        if !buf.is_empty() {
            let _ = tx.blocking_send(buf);
        }
    });
    rx
}
