//! Warnings about a condition that lasts (a full disk, an endpoint down) at most every few
//! seconds, so that the log says what is wrong without filling the disk it complains about.

use std::time::{Duration, Instant};

/// A warning that is logged at once, then at most every `every`.
pub struct Throttled {
    every: Duration,
    last: Option<Instant>,
    skipped: u64,
}

impl Throttled {
    /// At most one warning every `every`.
    pub fn every(every: Duration) -> Throttled {
        Throttled { every, last: None, skipped: 0 }
    }

    /// Logs `what` if the last warning is old enough (with how many were left out since).
    pub fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            self.skipped += 1;
            return;
        }
        match self.skipped {
            0 => tracing::warn!("{what}"),
            n => tracing::warn!("{what} ({n} more like it since the last)"),
        }
        self.last = Some(Instant::now());
        self.skipped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_at_once_then_counts_what_it_leaves_out() {
        let mut t = Throttled::every(Duration::from_secs(3600));
        t.warn(format_args!("one"));
        t.warn(format_args!("two"));
        t.warn(format_args!("three"));
        assert_eq!(t.skipped, 2);
    }
}
