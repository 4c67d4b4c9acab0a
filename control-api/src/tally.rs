//! What one process counts, summed over the cluster for the console and the live streams: the
//! events it took in and processed, what it refused, its sources' lags, what its memory holds
//! and its users' share of each segment. A cluster's other processes send theirs to process 0
//! (through the workers' gossip), which serves the sum.

use crate::handle::Progress;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

/// One source partition's lag on one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceLag {
    /// The process reading it.
    pub process: usize,
    /// `http` (an ingest log partition, lag in bytes) or `kafka` (lag in messages).
    pub source: String,
    /// The Kafka topic (empty for the ingest log).
    pub topic: String,
    /// The partition.
    pub partition: i64,
    /// Bytes (ingest log) or messages (Kafka) not read yet.
    pub lag: i64,
}

/// One process's counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Events its ingest accepted.
    pub events_in: u64,
    /// Events its workers read.
    pub events_processed: u64,
    /// Refused as unreadable (or late, under the dead-letter policy).
    pub rejected: u64,
    /// Late events moved up to the watermark.
    pub late: u64,
    /// Repeated `messageId`s dropped.
    pub duplicates: u64,
    /// Events of suppressed users dropped.
    pub suppressed: u64,
    /// Kafka messages sent to the dead-letter topic.
    pub dead_letters: u64,
    /// Records its arrangements hold.
    pub arranged_records: i64,
    /// User ids it holds (every process holds every id: the cluster shares them).
    pub user_ids: u64,
    /// Its users' share of each segment.
    pub segment_sizes: BTreeMap<String, i64>,
    /// Its sources' lags.
    pub sources: Vec<SourceLag>,
}

impl Tally {
    /// This process's counts (process `process`, with `log_lags` bytes of each ingest log
    /// partition not read yet, holding `user_ids` ids).
    pub fn of(progress: &Progress, log_lags: Vec<u64>, process: usize, user_ids: usize) -> Tally {
        let load = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        let http = log_lags.into_iter().enumerate().map(|(partition, lag)| SourceLag {
            process,
            source: "http".into(),
            topic: String::new(),
            partition: partition as i64,
            lag: lag as i64,
        });
        let kafka: Vec<SourceLag> = {
            let lags = progress.kafka_lag.lock().unwrap_or_else(PoisonError::into_inner);
            lags.iter()
                .map(|((topic, partition), lag)| SourceLag {
                    process,
                    source: "kafka".into(),
                    topic: topic.clone(),
                    partition: i64::from(*partition),
                    lag: *lag,
                })
                .collect()
        };
        Tally {
            events_in: load(&progress.events_in),
            events_processed: load(&progress.events_processed),
            rejected: load(&progress.rejected),
            late: load(&progress.late),
            duplicates: load(&progress.duplicates),
            suppressed: load(&progress.suppressed),
            dead_letters: load(&progress.dead_letters),
            arranged_records: progress.arranged_records.load(Ordering::Relaxed),
            user_ids: user_ids as u64,
            segment_sizes: progress.segment_sizes.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            sources: http.chain(kafka).collect(),
        }
    }

    /// Adds `other`'s counts to these (but the user ids, which every process holds alike).
    pub fn add(&mut self, other: &Tally) {
        self.events_in += other.events_in;
        self.events_processed += other.events_processed;
        self.rejected += other.rejected;
        self.late += other.late;
        self.duplicates += other.duplicates;
        self.suppressed += other.suppressed;
        self.dead_letters += other.dead_letters;
        self.arranged_records += other.arranged_records;
        for (id, size) in &other.segment_sizes {
            *self.segment_sizes.entry(id.clone()).or_default() += size;
        }
        self.sources.extend(other.sources.iter().cloned());
    }
}

/// The cluster's counts: this process's `own` and the latest each other process sent.
pub fn cluster(progress: &Progress, own: Tally) -> Tally {
    let others = progress.peer_tallies.lock().unwrap_or_else(PoisonError::into_inner);
    others.values().fold(own, |mut sum, other| {
        sum.add(other);
        sum
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_tally_sums_every_process_once() {
        let progress = Progress::default();
        let own =
            Tally { events_in: 3, user_ids: 5, segment_sizes: BTreeMap::from([("s".into(), 2)]), ..Tally::default() };
        let other = Tally {
            events_in: 4,
            arranged_records: 9,
            user_ids: 5,
            segment_sizes: BTreeMap::from([("s".into(), 5), ("t".into(), 1)]),
            sources: vec![SourceLag { process: 1, source: "http".into(), topic: String::new(), partition: 0, lag: 7 }],
            ..Tally::default()
        };
        progress.peer_tallies.lock().unwrap().insert(1, other.clone());
        // The same process sending again replaces its counts.
        progress.peer_tallies.lock().unwrap().insert(1, other);
        let sum = cluster(&progress, own);
        assert_eq!((sum.events_in, sum.arranged_records, sum.sources.len()), (7, 9, 1));
        assert_eq!(sum.user_ids, 5, "user ids are this process's count: every process holds them all");
        assert_eq!(sum.segment_sizes, BTreeMap::from([("s".into(), 7), ("t".into(), 1)]));
    }
}
