//! One worker's inputs: its ingest log partitions and Kafka partitions with their
//! watermarks, read from where the newest checkpoint left them (its events entered first),
//! and the recorder of the checkpoint being taken.

use crate::checkpoint::{self, Manifest, Part, Positions, Recorder};
use crate::cluster::names::Names;
use crate::entry::Entry;
use crate::kafka_input::KafkaInput;
use crate::live::Shared;
use crate::programs::Programs;
use crate::sinks::Sinks;
use crate::watermark::Watermarks;
use journeyflow_connectors::wal::{part_dir, Tail};
use journeyflow_types::decode_record;
use std::time::Instant;

/// One worker's inputs.
pub struct Inputs {
    /// Ingest log partitions: `(partition, tail)`.
    pub tails: Vec<(usize, Tail)>,
    /// Kafka partitions, if the worker reads any.
    pub kafka: Option<KafkaInput>,
    /// Watermarks: the ingest log partitions', then the Kafka partitions'.
    pub marks: Watermarks,
    recorder: Option<Recorder>,
}

impl Inputs {
    /// The partitions of worker `index` of `peers` (over the cluster: Kafka's), which is worker
    /// `local` of its process's `locals` (the process's own ingest log), each from where
    /// `restored` left it.
    pub fn open(
        shared: &Shared,
        (index, peers): (usize, usize),
        (local, locals): (usize, usize),
        restored: Option<&Manifest>,
    ) -> anyhow::Result<Inputs> {
        let positions = restored.map(|m| &m.positions);
        let tails: Vec<(usize, Tail)> = (0..shared.wal_committed.len())
            .filter(|p| p % locals == local)
            .map(|p| {
                let at = positions.and_then(|s| s.wal.get(&p)).copied().unwrap_or(0);
                let tail =
                    Tail::open_partition(&part_dir(&shared.wal_dir, p), at)?.until(shared.wal_committed[p].clone());
                Ok((p, tail))
            })
            .collect::<std::io::Result<_>>()?;
        // Where each partition is read from: what is before it counts as read.
        let mut read = crate::live::lock(&shared.handle.progress.log_read);
        read.extend(tails.iter().map(|(p, tail)| (*p, tail.offset())));
        drop(read);
        let kafka = match &shared.kafka {
            Some((config, origins, sink)) => {
                KafkaInput::open(config, origins, index, peers, sink.clone(), tails.len())?
            }
            None => None,
        };
        let n = tails.len() + kafka.as_ref().map_or(0, KafkaInput::len);
        let lateness = shared.ingest.allowed_lateness.unwrap_or(0);
        let mut inputs = Inputs { tails, kafka, marks: Watermarks::new(n, lateness, shared.idle), recorder: None };
        // Each partition's watermark goes on from where it was.
        if let Some(positions) = positions {
            for (w, name) in inputs.names().into_iter().enumerate() {
                if let Some(seen) = positions.seen.get(&name) {
                    inputs.marks.saw(w, *seen);
                }
            }
        }
        if let Some((root, _)) = &shared.checkpoints {
            let next = restored.map_or(1, |m| m.seq + 1);
            inputs.recorder = Some(Recorder::new(root, local, locals, next));
        }
        Ok(inputs)
    }

    /// The name of each partition, in watermark order.
    fn names(&self) -> Vec<String> {
        let wal = self.tails.iter().map(|(p, _)| format!("wal/{p}"));
        let kafka = self.kafka.iter().flat_map(|k| k.positions().into_iter().map(|(name, _)| name));
        wal.chain(kafka).collect()
    }

    /// Reads what came; returns how many records.
    pub fn read(
        &mut self,
        programs: &mut Programs,
        shared: &Shared,
        sinks: &mut Sinks,
        names: &mut Names,
    ) -> anyhow::Result<u64> {
        let progress = &shared.handle.progress;
        let mut entry = Entry {
            programs,
            sinks,
            marks: &mut self.marks,
            recorder: self.recorder.as_mut(),
            progress,
            users: Vec::new(),
            max_future_skew: shared.max_future_skew,
        };
        let mut read = 0;
        for (w, (part, tail)) in self.tails.iter_mut().enumerate() {
            let lines = tail.read_at(20_000)?;
            if lines.is_empty() {
                entry.marks.at_end(w, Some(Instant::now()));
                continue;
            }
            for (offset, line) in lines {
                // A deleted user's line, overwritten with spaces.
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                read += 1;
                // Lines were checked at ingest; one that fails now (a log from an older
                // version, a disk error) is dead-lettered with its place and reason.
                if let Err(reason) = entry.enter(w, &line, None)? {
                    progress.dead_letters.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    entry.sinks.dead_letter(&format!("wal/{part}"), offset, &reason, &line)?;
                }
            }
            crate::live::lock(&progress.log_read).insert(*part, tail.offset());
        }
        if let Some(kafka) = &mut self.kafka {
            read += kafka.read(20_000, &mut entry)?;
        }
        // User ids for outputs and answers, to every process.
        names.note(&entry.users);
        Ok(read)
    }

    /// Bytes of checkpoint chunks waiting for a disk that refused them.
    pub fn backlog(&self) -> usize {
        self.recorder.as_ref().map_or(0, Recorder::backlog)
    }

    /// The checkpoint being recorded, if checkpoints are taken.
    pub fn checkpoint(&self) -> Option<u64> {
        self.recorder.as_ref().map(Recorder::seq)
    }

    /// Finishes this worker's part of the open checkpoint: the events since the last one and
    /// where every partition stands.
    pub fn finish_checkpoint(&mut self) -> anyhow::Result<Option<Part>> {
        let mut positions = Positions::default();
        for (w, name) in self.names().into_iter().enumerate() {
            if let Some(seen) = self.marks.max_seen(w) {
                positions.seen.insert(name, seen);
            }
        }
        positions.wal = self.tails.iter().map(|(p, tail)| (*p, tail.offset())).collect();
        positions.kafka = self.kafka.iter().flat_map(|k| k.positions().into_iter().map(|(_, at)| at)).collect();
        self.recorder.as_mut().map(|r| r.finish(positions)).transpose()
    }
}

/// Enters this worker's share of its process's checkpoint (every `locals`-th file), each
/// event at the time it entered at before; returns how many.
pub fn restore(
    manifest: &Manifest,
    root: &std::path::Path,
    local: usize,
    locals: usize,
    programs: &mut Programs,
    sinks: &mut Sinks,
    names: &mut Names,
) -> anyhow::Result<u64> {
    let mut n = 0;
    for file in manifest.files.iter().skip(local).step_by(locals) {
        let mut users = Vec::new();
        for (time, line) in checkpoint::events(root, file)? {
            let (event, _) = decode_record(line.as_bytes())
                .map_err(|e| anyhow::anyhow!("checkpoint file {file}: an event that does not decode: {e}"))?;
            users.push((event.user(), std::sync::Arc::from(event.user_id())));
            if sinks.archives_events() {
                sinks.event(time, &event.to_event());
            }
            programs.offer_at(event, time);
            n += 1;
        }
        names.note(&users);
    }
    Ok(n)
}
