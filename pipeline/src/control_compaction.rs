//! Compaction of the control log: the changes through a time give way to the fewest changes
//! that make the same catalog and, applied again at a restart that restores the journeys from
//! a snapshot at or after that time, run the same programs from then on. A segment is
//! installed as its latest definition at the time it was installed or replaced; a journey is
//! published at its running version at the time that version was published; drafts, pending
//! versions and statuses (which a restored journey has already) come last; removed segments and
//! journeys leave nothing; deletions and unsuppressions stay as they were (their ids are their
//! positions).

use crate::control_log::Entry;
use journeyflow_control_api::catalog::{status, Catalog, Change, Lifecycle};
use journeyflow_operators::Time;
use journeyflow_types::Limits;
use serde_json::Value;
use std::collections::BTreeMap;

/// The control log compacted through a time.
#[derive(Debug)]
pub struct Compacted {
    /// Its entries: the changes standing for those through the time, then the later ones.
    pub entries: Vec<Entry>,
    /// How many entries fewer than before.
    pub dropped: usize,
    /// Whether a journey published through the time still has a dataflow: a restart must then
    /// restore it from a snapshot at or after the time.
    pub journeys: bool,
}

/// Where a change stands in the log: its time, its position, and an order among the changes
/// made for one position.
type Place = (Time, usize, u8);

fn id_of(definition: &Value) -> Option<String> {
    definition.get("id").and_then(Value::as_str).map(str::to_string)
}

/// Compacts `entries` (in log order, so in time order) through `through`. `None` when the
/// compacted changes would not fold to the same catalog (a draft or pending version naming a
/// segment removed since): the log is then kept as it is.
pub fn compact(entries: &[Entry], through: Time) -> Option<Compacted> {
    let cut = entries.partition_point(|e| e.time <= through);
    let (head, tail) = entries.split_at(cut);
    let mut catalog = Catalog::default();
    // Each segment's latest definition that applied, and where.
    let mut segments: BTreeMap<String, (Place, Value)> = BTreeMap::new();
    // Each funnel's and cohort's latest definition, and where.
    let mut funnels: BTreeMap<String, (Place, Value)> = BTreeMap::new();
    let mut cohorts: BTreeMap<String, (Place, Value)> = BTreeMap::new();
    let mut paths: BTreeMap<String, (Place, Value)> = BTreeMap::new();
    // Where each journey's running version was published.
    let mut journeys: BTreeMap<String, Place> = BTreeMap::new();
    let mut kept: Vec<(Place, Change)> = Vec::new();
    for (i, entry) in head.iter().enumerate() {
        // As at start: a change that no longer passes its check is left out.
        if catalog.check(&entry.change, &Limits::ceiling()).is_err() {
            continue;
        }
        catalog.apply(&entry.change, entry.time);
        let place = (entry.time, i, 0);
        match &entry.change {
            Change::InstallSegment { definition } | Change::ReplaceSegment { definition } => {
                segments.extend(id_of(definition).map(|id| (id, (place, definition.clone()))));
            }
            // The catalog keeps what these leave (drafts, pending versions, statuses).
            Change::RemoveSegment { .. }
            | Change::DraftJourney { .. }
            | Change::ReviseJourney { .. }
            | Change::JourneyCommand { .. } => {}
            Change::InstallJourney { definition, .. } | Change::PublishVersion { definition, .. } => {
                journeys.extend(id_of(definition).map(|id| (id, place)));
            }
            Change::RemoveJourney { id } => {
                journeys.remove(id);
            }
            Change::DeleteUser { .. } | Change::Unsuppress { .. } => kept.push((place, entry.change.clone())),
            // What entries did is in the journey snapshot the compaction is behind.
            Change::EnterJourney { .. } => {}
            Change::InstallFunnel { definition } | Change::ReplaceFunnel { definition } => {
                funnels.extend(id_of(definition).map(|id| (id, (place, definition.clone()))));
            }
            Change::InstallCohort { definition } | Change::ReplaceCohort { definition } => {
                cohorts.extend(id_of(definition).map(|id| (id, (place, definition.clone()))));
            }
            Change::InstallPaths { definition } | Change::ReplacePaths { definition } => {
                paths.extend(id_of(definition).map(|id| (id, (place, definition.clone()))));
            }
            Change::RemoveFunnel { .. } | Change::RemoveCohort { .. } | Change::RemovePaths { .. } => {}
        }
    }
    for id in catalog.funnels.keys() {
        if let Some((place, definition)) = funnels.get(id) {
            kept.push((*place, Change::InstallFunnel { definition: definition.clone() }));
        }
    }
    for id in catalog.cohorts.keys() {
        if let Some((place, definition)) = cohorts.get(id) {
            kept.push((*place, Change::InstallCohort { definition: definition.clone() }));
        }
    }
    for id in catalog.paths.keys() {
        if let Some((place, definition)) = paths.get(id) {
            kept.push((*place, Change::InstallPaths { definition: definition.clone() }));
        }
    }
    for id in catalog.segments.keys() {
        if let Some((place, definition)) = segments.get(id) {
            kept.push((*place, Change::InstallSegment { definition: definition.clone() }));
        }
    }
    // Drafts and pending versions run nothing and keep no time: they come after every
    // segment they may name (a draft's segments may be replaced after it was written).
    let last = (head.last().map_or(0, |e| e.time), head.len(), 0);
    let mut published = false;
    for (id, entry) in &catalog.journeys {
        if entry.status == status::DRAFT {
            kept.push((last, Change::DraftJourney { definition: entry.definition.clone() }));
            continue;
        }
        let Some(&at) = journeys.get(id) else { continue };
        published = true;
        let (definition, version) = (entry.definition.clone(), entry.version);
        kept.push((at, Change::InstallJourney { definition, version }));
        if let Some(next) = &entry.next {
            kept.push((last, Change::ReviseJourney { definition: next.clone() }));
        }
        let command = match entry.status.as_str() {
            status::PAUSED => Some(Lifecycle::Pause),
            status::ENDED => Some(Lifecycle::End),
            _ => None,
        };
        if let Some(command) = command {
            // After its pending version (an ended journey takes none), and so after its
            // publication even when that came while it was paused.
            kept.push(((last.0, last.1, 1), Change::JourneyCommand { id: id.clone(), command }));
        }
    }
    // Stable: one place's changes stay in the order they were made.
    kept.sort_by_key(|(place, _)| *place);
    let mut compacted: Vec<Entry> = kept.into_iter().map(|((time, _, _), change)| Entry { time, change }).collect();
    let (folded, refused) = Catalog::fold(compacted.iter().map(|e| (&e.change, e.time)));
    if folded != catalog || !refused.is_empty() {
        // A draft or pending version naming a segment removed since cannot be written again.
        tracing::warn!(
            "control log: not compacted through {through}: the changes left would not make the same catalog \
             (a draft naming a removed segment?)"
        );
        return None;
    }
    let dropped = head.len().saturating_sub(compacted.len());
    compacted.extend_from_slice(tail);
    Some(Compacted { entries: compacted, dropped, journeys: published })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn segment(id: &str, event: &str) -> Value {
        json!({"id": id, "condition": {"performed": {"event": event, "within": "7d"}}})
    }

    fn journey(id: &str, segment: &str, action: &str) -> Value {
        json!({
            "id": id,
            "entry": {"segment_enter": segment},
            "start": "a",
            "nodes": {
                "a": {"action": {"channel": "email", "template": action}, "next": "done"},
                "done": {"exit": {}}
            }
        })
    }

    fn at(time: Time, change: Change) -> Entry {
        Entry { time, change }
    }

    fn fold(entries: &[Entry]) -> Catalog {
        let (catalog, refused) = Catalog::fold(entries.iter().map(|e| (&e.change, e.time)));
        assert!(refused.is_empty(), "{refused:?}");
        catalog
    }

    fn command(id: &str, command: Lifecycle) -> Change {
        Change::JourneyCommand { id: id.into(), command }
    }

    #[test]
    fn superseded_and_removed_definitions_leave_and_the_catalog_stays() {
        let log = vec![
            at(1, Change::InstallSegment { definition: segment("s", "a") }),
            at(2, Change::InstallSegment { definition: segment("gone", "a") }),
            at(3, Change::ReplaceSegment { definition: segment("s", "b") }),
            at(4, Change::RemoveSegment { id: "gone".into() }),
            at(5, Change::DraftJourney { definition: journey("j", "s", "one") }),
            at(6, Change::ReviseJourney { definition: journey("j", "s", "two") }),
            at(7, Change::InstallJourney { definition: journey("j", "s", "two"), version: 1 }),
            at(8, Change::ReviseJourney { definition: journey("j", "s", "three") }),
            at(9, command("j", Lifecycle::Pause)),
            at(10, Change::DeleteUser { user: "0".repeat(32), suppress: true }),
            at(11, command("j", Lifecycle::Resume)),
            at(12, command("j", Lifecycle::Pause)),
            at(13, Change::DraftJourney { definition: journey("d", "s", "x") }),
            at(20, command("j", Lifecycle::Resume)),
        ];
        let compacted = compact(&log, 15).unwrap();
        assert_eq!(fold(&compacted.entries), fold(&log));
        assert_eq!(fold(&compacted.entries[..compacted.entries.len() - 1]), fold(&log[..13]));
        assert!(compacted.journeys);
        let changes: Vec<(Time, &str)> = compacted
            .entries
            .iter()
            .map(|e| {
                let name = match &e.change {
                    Change::InstallSegment { .. } => "install segment",
                    Change::InstallJourney { .. } => "publish",
                    Change::ReviseJourney { .. } => "revise",
                    Change::JourneyCommand { .. } => "command",
                    Change::DeleteUser { .. } => "delete",
                    Change::DraftJourney { .. } => "draft",
                    _ => "other",
                };
                (e.time, name)
            })
            .collect();
        let expected = vec![
            (3, "install segment"),
            (7, "publish"),
            (10, "delete"),
            (13, "draft"),
            (13, "revise"),
            (13, "command"),
            (20, "command"),
        ];
        assert_eq!(changes, expected);
        assert_eq!(compacted.dropped, 13 - 6);
    }

    #[test]
    fn a_version_published_while_paused_is_paused_after_its_publication() {
        let log = vec![
            at(1, Change::InstallSegment { definition: segment("s", "a") }),
            at(2, Change::InstallJourney { definition: journey("j", "s", "one"), version: 1 }),
            at(3, command("j", Lifecycle::Pause)),
            at(
                4,
                Change::PublishVersion {
                    definition: journey("j", "s", "two"),
                    version: 2,
                    migrate: Default::default(),
                },
            ),
            at(5, command("j", Lifecycle::End)),
            at(6, Change::InstallJourney { definition: journey("k", "s", "one"), version: 1 }),
            at(7, command("k", Lifecycle::End)),
            at(8, Change::RemoveJourney { id: "k".into() }),
        ];
        for through in 0..9 {
            let compacted = compact(&log, through).unwrap();
            assert_eq!(fold(&compacted.entries), fold(&log), "through {through}");
            assert_eq!(compacted.journeys, through >= 2, "through {through}");
        }
        let compacted = compact(&log[..4], 4).unwrap();
        let kinds: Vec<Time> = compacted.entries.iter().map(|e| e.time).collect();
        assert_eq!(kinds, vec![1, 4, 4]);
    }

    #[test]
    fn nothing_to_drop_is_an_empty_compaction() {
        let log = vec![at(1, Change::InstallSegment { definition: segment("s", "a") })];
        let compacted = compact(&log, 1).unwrap();
        assert_eq!(compacted.entries, log);
        assert_eq!(compacted.dropped, 0);
        assert!(!compacted.journeys);
    }

    /// One of a few changes to two segments (the second naming the first), two journeys and
    /// two users: most random sequences of them pass their checks only in part, as a log's may.
    fn change(kind: u8, which: u8, variant: u8) -> Change {
        let (segment_id, journey_id) = (["a", "b"][which as usize % 2], ["j", "k"][which as usize % 2]);
        let event = ["x", "y", "z"][variant as usize % 3];
        let segment = |id: &str| match id {
            "a" => segment("a", event),
            _ => json!({"id": "b", "condition": {"all": [{"in_segment": "a"}, {"performed": {"event": event}}]}}),
        };
        match kind % 12 {
            0 => Change::InstallSegment { definition: segment(segment_id) },
            1 => Change::ReplaceSegment { definition: segment(segment_id) },
            2 => Change::RemoveSegment { id: segment_id.into() },
            3 => Change::DraftJourney { definition: journey(journey_id, "a", event) },
            4 => Change::ReviseJourney { definition: journey(journey_id, "a", event) },
            5 => Change::InstallJourney { definition: journey(journey_id, "a", event), version: 1 },
            6 => Change::PublishVersion {
                definition: journey(journey_id, "a", event),
                version: 2 + variant as u32 % 2,
                migrate: Default::default(),
            },
            7 => Change::RemoveJourney { id: journey_id.into() },
            8 => command(journey_id, [Lifecycle::Pause, Lifecycle::Resume, Lifecycle::End][variant as usize % 3]),
            9 => Change::DeleteUser { user: format!("{which:032x}"), suppress: variant.is_multiple_of(2) },
            10 => Change::Unsuppress { user: format!("{which:032x}") },
            _ => command(journey_id, Lifecycle::Pause),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 256, ..Default::default() })]

        /// For random logs and times, the compacted log folds to the same catalog, through the
        /// time and after it, and keeps its times in order.
        #[test]
        fn a_compacted_log_folds_to_the_same_catalog(
            ops in proptest::collection::vec((0u8..12, 0u8..2, 0u8..3, 0u64..3), 0..40),
            through in 0u64..80,
        ) {
            // The changes that pass their checks, as a sequencer logs them.
            let mut catalog = Catalog::default();
            let mut log = Vec::new();
            let mut time = 0;
            for (kind, which, variant, step) in ops {
                time += step;
                let change = change(kind, which, variant);
                if catalog.check(&change, &Limits::ceiling()).is_ok() {
                    catalog.apply(&change, time);
                    log.push(at(time, change));
                }
            }
            let Some(compacted) = compact(&log, through) else {
                // Only a draft or pending version naming a removed segment has no compaction.
                let before = log.iter().take_while(|e| e.time <= through).cloned().collect::<Vec<_>>();
                let catalog = fold(&before);
                let unwritable = !catalog.segments.contains_key("a")
                    && catalog.journeys.values().any(|j| j.status == status::DRAFT || j.next.is_some());
                proptest::prop_assert!(unwritable, "no compaction of {:?}", before);
                return Ok(());
            };
            proptest::prop_assert_eq!(fold(&compacted.entries), fold(&log));
            let head = compacted.entries.iter().take_while(|e| e.time <= through).count();
            let before = log.iter().take_while(|e| e.time <= through).count();
            proptest::prop_assert_eq!(fold(&compacted.entries[..head]), fold(&log[..before]));
            proptest::prop_assert_eq!(&compacted.entries[head..], &log[before..]);
            proptest::prop_assert_eq!(compacted.dropped, before - head);
            proptest::prop_assert!(compacted.entries.windows(2).all(|w| w[0].time <= w[1].time));
        }
    }
}
