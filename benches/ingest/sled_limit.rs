//! sled's own limits, measured in the same run on the same machine, so the
//! daemon's figures read as a share of what its store could do at best:
//!
//! - a bare sled tree taking the same number of keys, in increasing
//!   big-endian order, with values the size of our records (one `apply_batch`
//!   per 1,000 keys and a flush after each), in a child process of its own
//!   so its peak RSS is its alone; and the bytes per key it leaves on disk;
//! - sled alone opening a copy of the daemon's store (its recovery), and
//!   what that store holds, tree by tree (keys and bytes per invitation).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The page cache and flush interval of the daemon's store, so the bare
/// tree runs under the same settings.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;
const FLUSH_EVERY_MS: u64 = 200;
const BATCH: u64 = 1_000;
/// Set in the child's environment: `DIR:KEYS:VALUE_LEN`.
const CHILD: &str = "BENCH_SLED_LIMIT_CHILD";

/// What the bare tree did (the child prints it as one line).
pub struct Bare {
    pub keys: u64,
    pub value_len: usize,
    pub inserts_per_s: f64,
    pub peak_kib: u64,
    pub bytes_per_key: f64,
    /// The load average around the child's run (set by the parent).
    pub load: String,
}

/// In the child (the bench's own executable, run again): do the inserts,
/// print the figures, and tell `main` to stop there.
pub fn child_if_asked() -> Option<anyhow::Result<()>> {
    let spec = std::env::var(CHILD).ok()?;
    Some((|| {
        let mut it = spec.rsplitn(3, ':');
        let value_len: usize = it.next().context("value len")?.parse()?;
        let keys: u64 = it.next().context("keys")?.parse()?;
        let dir = Path::new(it.next().context("dir")?);
        let bare = insert(dir, keys, value_len)?;
        println!(
            "{} {} {} {} {}",
            bare.keys, bare.value_len, bare.inserts_per_s, bare.peak_kib, bare.bytes_per_key
        );
        Ok(())
    })())
}

fn insert(dir: &Path, keys: u64, value_len: usize) -> anyhow::Result<Bare> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .flush_every_ms(Some(FLUSH_EVERY_MS))
        .open()?;
    let tree = db.open_tree("bare")?;
    // Values that do not compress, as sealed bytes do not (xorshift).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut value = vec![0u8; value_len];
    let started = Instant::now();
    let mut next = 0u64;
    while next < keys {
        let mut batch = sled::Batch::default();
        for k in next..(next + BATCH).min(keys) {
            for b in value.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            batch.insert(&k.to_be_bytes(), value.as_slice());
        }
        tree.apply_batch(batch)?;
        tree.flush()?;
        next = (next + BATCH).min(keys);
    }
    let secs = started.elapsed().as_secs_f64();
    drop(tree);
    drop(db);
    std::thread::sleep(Duration::from_millis(500));
    let peak_kib = crate::rss_kib(std::process::id()).map_or(0, |r| r.0);
    Ok(Bare {
        keys,
        value_len,
        inserts_per_s: keys as f64 / secs.max(1e-9),
        peak_kib,
        bytes_per_key: crate::walk_size(dir) as f64 / keys.max(1) as f64,
        load: String::new(),
    })
}

/// The bare tree in a child process, in a fresh directory under `scratch`;
/// `None` when the disk has no room for it.
pub fn bare(scratch: &Path, keys: u64, value_len: usize) -> anyhow::Result<Option<Bare>> {
    let dir = scratch.join("bare-sled");
    let need = keys.saturating_mul(value_len as u64 + 64).saturating_mul(2);
    if free_bytes(scratch).is_some_and(|free| free < need) {
        println!(
            "  (bare sled not measured: it needs about {:.1} GiB on disk)",
            need as f64 / 1073741824.0
        );
        return Ok(None);
    }
    let span = crate::load::Span::start();
    let out = std::process::Command::new(std::env::current_exe()?)
        .env(CHILD, format!("{}:{keys}:{value_len}", dir.display()))
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "bare sled child: {}", out.status);
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = line.split_whitespace().collect();
    let field = |i: usize| f.get(i).copied().context("bare sled child's figures");
    let bare = Bare {
        keys: field(0)?.parse()?,
        value_len: field(1)?.parse()?,
        inserts_per_s: field(2)?.parse()?,
        peak_kib: field(3)?.parse()?,
        bytes_per_key: field(4)?.parse()?,
        load: span.end(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Some(bare))
}

/// One tree of the daemon's store: keys, key bytes, value bytes.
pub struct TreeShape {
    pub name: String,
    pub keys: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// Every tree of an opened store, walked once.
fn shape(db: &sled::Db) -> anyhow::Result<Vec<TreeShape>> {
    let mut out = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let mut t = TreeShape {
            name: String::from_utf8_lossy(&name).into_owned(),
            keys: 0,
            key_bytes: 0,
            value_bytes: 0,
        };
        for kv in tree.iter() {
            let (k, v) = kv?;
            t.keys += 1;
            t.key_bytes += k.len() as u64;
            t.value_bytes += v.len() as u64;
        }
        out.push(t);
    }
    Ok(out)
}

/// The mean value of the tree holding the most value bytes: the size of
/// "our record" that the bare tree stores.
pub fn record_len(shape: &[TreeShape]) -> Option<(String, usize)> {
    let t = shape
        .iter()
        .filter(|t| t.keys > 0)
        .max_by_key(|t| t.value_bytes)?;
    Some((t.name.clone(), (t.value_bytes / t.keys) as usize))
}

/// sled alone opening a copy of the store (so the store's own recovery state
/// is left as the daemon will find it), then the copy's trees walked. `None`
/// when the disk has no room for a copy.
pub fn open_copy(db: &Path) -> anyhow::Result<Option<(Duration, Vec<TreeShape>)>> {
    let before = crate::rss_kib(std::process::id()).map_or(0, |r| r.1);
    let need = crate::walk_size(db);
    let free = free_bytes(db).unwrap_or(u64::MAX);
    if free < need.saturating_mul(12) / 10 {
        println!(
            "  (sled alone not measured: a copy of the store needs {:.1} GiB, {:.1} GiB free)",
            need as f64 / 1073741824.0,
            free as f64 / 1073741824.0
        );
        return Ok(None);
    }
    let copy = db.with_extension("copy");
    crate::copy_tree(db, &copy)?;
    let started = Instant::now();
    let opened = sled::Config::new()
        .path(&copy)
        .cache_capacity(CACHE_BYTES)
        .open()?;
    let took = started.elapsed();
    let after = crate::rss_kib(std::process::id()).map_or(0, |r| r.1);
    println!(
        "  sled alone, the copy just opened: this process's RSS +{:.1} MiB",
        after.saturating_sub(before) as f64 / 1024.0
    );
    let trees = shape(&opened)?;
    drop(opened);
    // sled's threads may still hold files a moment after the drop.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_dir_all(&copy)?;
    Ok(Some((took, trees)))
}

/// Free bytes on the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}
