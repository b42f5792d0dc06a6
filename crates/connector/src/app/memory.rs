//! The process's memory allocator, set before any thread starts. The
//! store's work runs on the runtime's blocking threads, and glibc gives
//! each thread that allocates an arena of its own (up to eight per core):
//! the engine's node copies freed on one thread stay as free room in that
//! thread's arena, so resident memory grew with the number of threads that
//! had touched the store (330 MiB ingesting 200,000 invitations, against
//! 104 MiB with two arenas: README "Performance"). Two arenas keep it near
//! what the live data needs; the allocator's lock is not what limits us.

/// Limit glibc's malloc to two arenas (elsewhere: nothing to do).
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is called
    // before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
