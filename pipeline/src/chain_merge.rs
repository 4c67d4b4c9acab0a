//! Merging the checkpoint chain's old files, so that the chain holds about the retention's
//! events in a bounded number of files: each worker's oldest file, once the events of it that
//! expired span the slack (a small part of the retention) or more, is written again without
//! them (the small files after it merged in);
//! otherwise a run of small files of one worker (checkpoints of a quiet stream) is merged into
//! one. At most one merge per worker and checkpoint; merged files stay under
//! [`MERGED_BYTES`]. A merged file takes the place of the first file it replaces, so the
//! chain keeps its order.
//!
//! An event is dropped when it entered before `expired` (it entered at its timestamp or
//! later): as with a whole file, it no longer matters to a restart.

use crate::checkpoint::{schema, Manifest};
use arrow::array::{Array, BooleanArray, UInt64Array};
use journeyflow_connectors::parquet_file::{read_batches, write_batches};
use journeyflow_operators::Time;
use std::collections::BTreeMap;
use std::path::Path;

/// Merged files stay under this many bytes.
pub const MERGED_BYTES: u64 = 16 << 20;
/// Files under this many bytes are small.
const SMALL_BYTES: u64 = MERGED_BYTES / 8;
/// A run of this many small files of one worker is merged.
const SMALL_RUN: usize = 8;

/// The worker that wrote a chain file (`<seq>/events-<writer>-<chunk>.parquet`).
fn writer(file: &str) -> &str {
    file.rsplit('/').next().and_then(|name| name.split('-').nth(1)).unwrap_or_default()
}

/// What to merge next: each worker's files to merge, in chain order.
fn plan(manifest: &Manifest, size: impl Fn(&str) -> u64, expired: Time, slack: Time) -> Vec<Vec<String>> {
    let mut by_writer: BTreeMap<&str, Vec<(&String, u64)>> = BTreeMap::new();
    for file in &manifest.files {
        by_writer.entry(writer(file)).or_default().push((file, size(file)));
    }
    let mut plans = Vec::new();
    for files in by_writer.values() {
        let Some((first, _)) = files.first() else { continue };
        let stale = manifest.earliest.get(*first).is_some_and(|earliest| expired.saturating_sub(*earliest) >= slack);
        // The run to merge starts at the oldest file when enough of it expired, otherwise at
        // the first run of small files long enough.
        let start = match stale {
            true => Some(0),
            false => files.windows(SMALL_RUN).position(|run| run.iter().all(|(_, bytes)| *bytes < SMALL_BYTES)),
        };
        let Some(start) = start else { continue };
        // The first file, then small ones while they fit.
        let (mut chosen, mut total) = (Vec::new(), 0);
        for (file, bytes) in &files[start..] {
            if !chosen.is_empty() && (*bytes >= SMALL_BYTES || total + bytes > MERGED_BYTES) {
                break;
            }
            total += bytes;
            chosen.push((*file).clone());
        }
        if chosen.len() > 1 || stale {
            plans.push(chosen);
        }
    }
    plans
}

/// Writes `files`' events that entered at `expired` or later to `name`; returns how many, and
/// their earliest and latest times (`None`, and no file, when none did).
fn write_merged(
    root: &Path,
    files: &[String],
    name: &str,
    expired: Time,
) -> anyhow::Result<Option<(usize, Time, Time)>> {
    // Column batches, filtered as they are: no row is copied out on its own.
    let mut batches = Vec::new();
    let (mut earliest, mut latest, mut rows) = (Time::MAX, 0, 0);
    for file in files {
        for batch in read_batches(&root.join(file))? {
            let Some(times) = batch.column(0).as_any().downcast_ref::<UInt64Array>() else {
                anyhow::bail!("{file}: not a checkpoint file (columns time, line)");
            };
            let keep: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| t >= expired))).collect();
            let kept = arrow::compute::filter_record_batch(&batch, &keep)?;
            if let Some(times) = kept.column(0).as_any().downcast_ref::<UInt64Array>() {
                earliest = earliest.min(times.values().iter().copied().min().unwrap_or(Time::MAX));
                latest = latest.max(times.values().iter().copied().max().unwrap_or(0));
            }
            rows += kept.num_rows();
            batches.push(kept);
        }
    }
    if rows == 0 {
        return Ok(None);
    }
    write_batches(&root.join(name), &schema(), &batches)?;
    Ok(Some((rows, earliest, latest)))
}

/// Merges what [`plan`] finds in `manifest`'s chain into new files of checkpoint `seq` (whose
/// directory exists), replacing them in it: an oldest file is written again once its events
/// that entered before `expired` span `slack`. Returns the files merged away (to delete once
/// the manifest is written). A merge that fails leaves its files in the chain as they were,
/// and the merges after it are not tried.
pub fn merge(root: &Path, seq: u64, manifest: &mut Manifest, expired: Time, slack: Time) -> Vec<String> {
    let size = |file: &str| std::fs::metadata(root.join(file)).map_or(0, |m| m.len());
    let mut gone = Vec::new();
    for (k, files) in plan(manifest, size, expired, slack).into_iter().enumerate() {
        let name = format!("{seq}/events-{}-m{k}.parquet", writer(&files[0]));
        // Written first: the chain changes only once the merged file is whole.
        let written = match write_merged(root, &files, &name, expired) {
            Ok(written) => written,
            Err(e) => {
                tracing::warn!("checkpoint {seq}: chain files not merged (they stay as they are): {e:#}");
                break;
            }
        };
        let at = manifest.files.iter().position(|f| *f == files[0]).unwrap_or(manifest.files.len());
        manifest.files.retain(|f| !files.contains(f));
        let rows = match written {
            Some((rows, earliest, latest)) => {
                manifest.files.insert(at.min(manifest.files.len()), name.clone());
                manifest.latest.insert(name.clone(), latest);
                manifest.earliest.insert(name, earliest);
                rows
            }
            None => 0,
        };
        tracing::info!("checkpoint {seq}: {} chain files merged ({rows} events kept)", files.len());
        gone.extend(files);
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{complete, events, newest, sweep, Positions, Recorder};

    fn manifest(files: &[(&str, Time, Time)]) -> Manifest {
        Manifest {
            seq: 9,
            files: files.iter().map(|(f, _, _)| f.to_string()).collect(),
            positions: Positions::default(),
            latest: files.iter().map(|(f, _, l)| (f.to_string(), *l)).collect(),
            earliest: files.iter().map(|(f, e, _)| (f.to_string(), *e)).collect(),
            journeys: None,
        }
    }

    #[test]
    fn a_partly_expired_oldest_file_and_runs_of_small_files_are_planned_per_worker() {
        let small = |_: &str| 1_000;
        // Worker 0's oldest file has 30 ms expired (the slack is 16); worker 1's has none, and
        // no run of eight.
        let chain = manifest(&[
            ("1/events-0of2-0.parquet", 0, 100),
            ("1/events-1of2-0.parquet", 80, 100),
            ("2/events-0of2-0.parquet", 100, 200),
            ("2/events-1of2-0.parquet", 100, 200),
        ]);
        let plans = plan(&chain, small, 30, 16);
        assert_eq!(plans, vec![vec!["1/events-0of2-0.parquet".to_string(), "2/events-0of2-0.parquet".to_string()]]);
        // Nothing expired: eight small files in a row are merged, a big one stops the run.
        let files: Vec<String> = (0..10).map(|i| format!("{i}/events-0of1-0.parquet")).collect();
        let chain = manifest(&files.iter().map(|f| (f.as_str(), 0, 1)).collect::<Vec<_>>());
        let sized = |f: &str| if f.starts_with("9/") { MERGED_BYTES } else { 1_000 };
        assert_eq!(plan(&chain, sized, 0, 16), vec![files[..9].to_vec()]);
        // Only seven small files: nothing to do.
        let chain = manifest(&files[..7].iter().map(|f| (f.as_str(), 0, 1)).collect::<Vec<_>>());
        assert!(plan(&chain, small, 0, 16).is_empty());
    }

    #[test]
    fn merged_files_keep_the_unexpired_events_in_order_and_the_old_ones_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut recorder = Recorder::new(root, 0, 1, 1);
        let mut previous = None;
        // Ten checkpoints of two events each, at 10 * seq and 10 * seq + 5.
        for seq in 1..=10u64 {
            for t in [10 * seq, 10 * seq + 5] {
                recorder.record(t, t, &format!("{{\"t\":{t}}}")).unwrap();
            }
            let part = recorder.finish(Positions::default()).unwrap();
            // Nothing expires before the tenth: the eighth merges the first eight.
            let expired = if seq < 10 { 0 } else { 30 };
            let (manifest, dropped) =
                complete(root, seq, previous.as_ref(), vec![part], None, expired, Some(16)).unwrap();
            if !dropped.is_empty() {
                sweep(root, &manifest).unwrap();
            }
            previous = Some(manifest);
        }
        let manifest = previous.unwrap();
        let all: Vec<Time> = manifest.files.iter().flat_map(|f| events(root, f).unwrap()).map(|(t, _)| t).collect();
        // The tenth wrote the merged file (20 ms of it expired) again without the events
        // before 30, with the two files after it.
        assert_eq!(all, (6..=21).map(|i| 5 * i).collect::<Vec<Time>>());
        assert_eq!(manifest.files, vec!["10/events-0of1-m0.parquet"]);
        assert_eq!((manifest.earliest[&manifest.files[0]], manifest.latest[&manifest.files[0]]), (30, 105));
        assert_eq!(newest(root).unwrap(), Some(manifest.clone()));
        // Every file on disk is named by the manifest.
        let mut on_disk = Vec::new();
        crate::scrub::walk(root, &mut on_disk).unwrap();
        let events_on_disk = on_disk.iter().filter(|p| p.to_string_lossy().contains("events-")).count();
        assert_eq!(events_on_disk, manifest.files.len());
    }
}
