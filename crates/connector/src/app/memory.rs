//! The process's memory allocator. The store's work runs on the runtime's
//! blocking threads, and the engine allocates and frees a copy of a node
//! for nearly every write: glibc's malloc spent a third of an ingest's CPU
//! in its own bookkeeping and, with an arena per thread, kept the freed
//! copies as room only that thread could reuse. jemalloc, with few arenas
//! and a background thread handing unused pages back to the system within
//! a second, keeps both down (`docs/book/src/performance.md` has the figures).

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts: two arenas (the runtime has
/// two workers, and the blocking threads come and go), pages no longer used
/// returned after a second by a background thread, and no block over 1 KiB
/// kept in a thread's own cache: the engine's node copies are a few
/// kilobytes, and with the default (32 KiB) every blocking thread kept a
/// stock of them, about 12 MiB of a million-invitation ingest's peak.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] =
    b"narenas:2,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_max:1024\0";
