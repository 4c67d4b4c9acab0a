//! Event-time watermarks of one worker's input partitions (ingest log parts and Kafka
//! partitions). A partition's watermark trails the largest event time it delivered by the
//! allowed lateness, and an event before it is late; the worker's watermark is the lowest of
//! its partitions that still deliver. A partition read to its end and quiet for the idle
//! timeout stops holding the watermark back; once all are, event time follows the wall clock.

use journeyflow_operators::Time;
use std::time::{Duration, Instant};

/// How far event time moves at once when it follows the wall clock (ms).
pub const WALL_TICK: Time = 50;

/// One partition's progress.
#[derive(Clone, Debug, Default)]
struct Partition {
    max_seen: Option<Time>,
    at_end_since: Option<Instant>,
}

/// The watermarks of one worker's partitions.
#[derive(Clone, Debug)]
pub struct Watermarks {
    lateness: Time,
    idle: Duration,
    parts: Vec<Partition>,
}

impl Watermarks {
    /// `partitions` partitions, none read yet.
    pub fn new(partitions: usize, lateness: Time, idle: Duration) -> Watermarks {
        Watermarks { lateness, idle, parts: vec![Partition::default(); partitions] }
    }

    /// Partition `p`'s watermark: its events before this time are late.
    pub fn floor(&self, p: usize) -> Time {
        self.parts[p].max_seen.map_or(0, |m| m.saturating_sub(self.lateness))
    }

    /// Partition `p` delivered an event at `ts`.
    pub fn saw(&mut self, p: usize, ts: Time) {
        let part = &mut self.parts[p];
        part.max_seen = Some(part.max_seen.map_or(ts, |m| m.max(ts)));
        part.at_end_since = None;
    }

    /// The largest event time partition `p` delivered.
    pub fn max_seen(&self, p: usize) -> Option<Time> {
        self.parts[p].max_seen
    }

    /// Partition `p` has been read to its end since `since` (`None`: it has more).
    pub fn at_end(&mut self, p: usize, since: Option<Instant>) {
        let part = &mut self.parts[p];
        part.at_end_since = match (part.at_end_since, since) {
            (Some(old), Some(_)) => Some(old),
            (_, new) => new,
        };
    }

    /// Where the worker's watermark may go, with the wall clock at `now` (epoch ms) and the
    /// other workers' highest watermark at `others`: the lowest watermark among partitions
    /// still delivering; when none is, the wall clock less the lateness (down to a whole
    /// [`WALL_TICK`]), or the highest partition's watermark, or `others`, whichever is latest:
    /// quiet partitions hold nobody back, also when event time runs ahead of the wall clock. `None` while one of them has delivered
    /// nothing yet, or when the worker reads no partition.
    pub fn target(&self, now: Time, others: Option<Time>) -> Option<Time> {
        let quiet = |p: &Partition| p.at_end_since.is_some_and(|t| t.elapsed() >= self.idle);
        let mut active = self.parts.iter().filter(|p| !quiet(p)).peekable();
        if active.peek().is_none() {
            // In whole ticks: a watermark that moved with every millisecond of an idle server
            // kept every dataflow busy, and the workers never parked (a quarter of a core).
            let wall = now.saturating_sub(self.lateness);
            // Nor does what they delivered wait for the one that delivered least.
            let own = self.parts.iter().filter_map(|p| p.max_seen).max().map_or(0, |m| m.saturating_sub(self.lateness));
            return (!self.parts.is_empty()).then(|| (wall - wall % WALL_TICK).max(own).max(others.unwrap_or(0)));
        }
        active.map(|p| p.max_seen.map(|m| m.saturating_sub(self.lateness))).min().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_delivering_partition_holds_the_watermark_and_quiet_ones_do_not() {
        let mut w = Watermarks::new(2, 10, Duration::ZERO);
        assert_eq!(w.target(1_000, None), None, "nothing read yet");
        w.saw(0, 100);
        assert_eq!(w.target(1_000, None), None, "partition 1 delivered nothing yet");
        w.saw(1, 50);
        w.saw(0, 90);
        assert_eq!((w.target(1_000, None), w.floor(0), w.floor(1)), (Some(40), 90, 40));
        w.at_end(1, Some(Instant::now()));
        assert_eq!(w.target(1_000, None), Some(90), "partition 1 is read to its end and quiet");
        w.at_end(0, Some(Instant::now()));
        assert_eq!(w.target(1_000, None), Some(950), "all quiet: the wall clock, in whole ticks");
        assert_eq!(w.target(50, None), Some(90), "or the highest partition's watermark, if later");
        assert_eq!(w.target(1_059, None), Some(1_000));
        assert_eq!(w.target(1_000, Some(4_000)), Some(4_000), "all quiet: the other workers, if later");
        assert_eq!(w.target(1_000, Some(10)), Some(950));
        w.saw(1, 60);
        assert_eq!(w.target(1_000, None), Some(50));
    }

    #[test]
    fn a_partition_at_its_end_holds_the_watermark_until_the_idle_timeout() {
        let mut w = Watermarks::new(1, 0, Duration::from_secs(3600));
        w.saw(0, 5);
        w.at_end(0, Some(Instant::now()));
        assert_eq!(w.target(1_000, None), Some(5));
        assert_eq!(Watermarks::new(0, 0, Duration::ZERO).target(1_000, None), None, "no partition");
    }
}
