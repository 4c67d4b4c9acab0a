//! The range of an analysis report (funnels, cohorts, paths): entry times cut into buckets, checked
//! and bounded the same way for every kind.

use serde::{Deserialize, Serialize};

/// Event time in epoch milliseconds.
pub type Time = u64;

/// The most buckets a report has.
pub const MAX_BUCKETS: u64 = 10_000;

/// The range of a report: entry times (a funnel's first step, a cohort's first event) in
/// `[from, to)`, in buckets of `step` from `from` (one bucket without a step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets {
    /// The first entry time counted (inclusive).
    pub from: Time,
    /// The end of the range (exclusive).
    pub to: Time,
    /// The buckets' length, if the range is cut.
    pub step: Option<Time>,
}

impl Buckets {
    /// A query, or why it is not one: `from` before `to`, a positive step, at most
    /// [`MAX_BUCKETS`] buckets.
    pub fn new(from: Time, to: Time, step: Option<Time>) -> Result<Buckets, String> {
        if from >= to {
            return Err("from must be before to".into());
        }
        if step == Some(0) {
            return Err("step must be positive".into());
        }
        let query = Buckets { from, to, step };
        if query.buckets() > MAX_BUCKETS {
            return Err(format!(
                "{} buckets, more than {MAX_BUCKETS}: a wider step or a shorter range",
                query.buckets()
            ));
        }
        Ok(query)
    }

    /// How many buckets the range has.
    pub fn buckets(&self) -> u64 {
        self.step.map_or(1, |s| (self.to - self.from).div_ceil(s))
    }

    /// Where bucket `b` starts and ends (the last one ends at `to`).
    pub fn bounds(&self, b: u32) -> (Time, Time) {
        let start = self.from.saturating_add(self.step.unwrap_or(0).saturating_mul(u64::from(b)));
        let end = self.step.map_or(self.to, |s| start.saturating_add(s).min(self.to));
        (start, end)
    }

    /// The bucket an attempt starting at `start` counts in, if any.
    pub fn bucket(&self, start: Time) -> Option<u32> {
        if start < self.from || start >= self.to {
            return None;
        }
        Some(self.step.map_or(0, |s| ((start - self.from) / s) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cut_from_from_and_bounded() {
        let q = Buckets::new(100, 350, Some(100)).unwrap();
        assert_eq!(
            (q.buckets(), q.bucket(99), q.bucket(100), q.bucket(349), q.bucket(350)),
            (3, None, Some(0), Some(2), None)
        );
        assert!(Buckets::new(0, 10_001, Some(1)).is_err());
        assert!(Buckets::new(5, 5, None).is_err());
        assert_eq!(Buckets::new(0, u64::MAX, None).unwrap().buckets(), 1);
    }
}
