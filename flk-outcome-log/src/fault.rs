//! Test-only fault injection: makes the writer's next writes, fsyncs or rollbacks fail (feature `fault-injection`).
//!
//! Without the feature, [`Faults`] is empty and every check compiles to "no fault".

use std::io;

/// Which writer step an injected fault hits.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The batch write stops after half of the batch's bytes and returns an error, leaving a
    /// torn batch in the file that the writer must roll back.
    Write,
    /// The batch is written in full, then `fdatasync` returns an error.
    Fsync,
    /// Rolling a failed batch back (truncating the segment) fails: the log goes to its failed
    /// state and answers `Unavailable` until reopened. Only hit after a write or fsync failure.
    Rollback,
}

/// Pending injected faults of one log.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    #[cfg(feature = "fault-injection")]
    pending: [std::sync::atomic::AtomicU32; 3],
}

/// The writer step being checked for an injected fault.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    Write,
    Fsync,
    Rollback,
}

impl Faults {
    #[cfg(feature = "fault-injection")]
    pub(crate) fn inject(&self, fault: Fault, count: u32) {
        let step = match fault {
            Fault::Write => Step::Write,
            Fault::Fsync => Step::Fsync,
            Fault::Rollback => Step::Rollback,
        };
        self.pending[step as usize].fetch_add(count, std::sync::atomic::Ordering::SeqCst);
    }

    /// An error to return instead of doing `step`, when a fault is pending for it.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn take(&self, step: Step) -> Option<io::Error> {
        use std::sync::atomic::Ordering;
        self.pending[step as usize]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| io::Error::other(format!("injected {step:?} fault")))
    }

    #[cfg(not(feature = "fault-injection"))]
    #[inline(always)]
    pub(crate) fn take(&self, _step: Step) -> Option<io::Error> {
        None
    }
}
