//! Background work yields the CPU to requests. The search indexer and tantivy's indexing
//! and merge threads (half of all CPU time during ingest, measured) run at a lower CPU
//! priority (nice +10) than the HTTP workers, the resolver and the commit thread: on a
//! machine with few cores a lookup or a batch then waits for a core behind requests only,
//! not behind a segment merge. Work postponed this way is not lost: a busy indexer fills
//! its queue, which slows the commit thread, so the index keeps up over time. RocksDB's
//! compactions keep their priority (RocksDB's only setting, nice 19, let compaction debt
//! build up; writes would then stall).

/// How much lower background threads run (nice value added).
pub const NICENESS: i32 = 10;

/// Lowers the calling thread's CPU priority by [`NICENESS`]. Threads it starts
/// afterwards inherit the lower priority (Linux keeps a nice value per thread). Does
/// nothing where that is not supported, apart from a debug line.
pub fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id, no memory passed.
        let done = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, now + NICENESS)
        };
        if done != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "cannot lower a background thread's priority"
            );
        }
    }
}

/// Runs `f` on a new thread of lower priority and returns its result: what `f` starts
/// (tantivy's writer threads) inherits that priority.
pub fn spawn_lowered<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                lower_current_thread();
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    fn nice_of_current_thread() -> i32 {
        // SAFETY: as above.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[test]
    fn threads_started_by_a_lowered_thread_run_lower_and_the_caller_does_not() {
        let caller = nice_of_current_thread();
        let (own, child) = super::spawn_lowered(|| {
            let own = nice_of_current_thread();
            let child = std::thread::spawn(nice_of_current_thread)
                .join()
                .expect("child thread");
            (own, child)
        });
        let expected = (caller + super::NICENESS).min(19);
        assert_eq!(own, expected);
        assert_eq!(child, expected, "inherited by threads it starts");
        assert_eq!(
            nice_of_current_thread(),
            caller,
            "the caller keeps its priority"
        );
    }
}
