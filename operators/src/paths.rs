//! `paths`: for each event of a user matching a path analysis's anchor, the names of the events
//! they did next (or, backwards, the events that led to it), kept as an arrangement by user
//! that reports read as of any time. The steps are the user's events (of the analysis's names,
//! if it has some) strictly after (before) the anchor in `(timestamp, messageId)` order, within
//! its window of the anchor if it has one; with `collapse`, an event of the same name as the
//! step before it (the anchor, for the first) is left out; a path has at most `depth` steps.
//! Which anchor counts for a report (each user's first in the range) is decided when the
//! report is read.
//!
//! A user's paths are recomputed by a differential `reduce` when their events change, so an
//! analysis installed over the retained history is computed at once and kept current as events
//! arrive and expire.

use crate::{Time, UserId};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

/// An event that may be an anchor or a step: `(timestamp, messageId)` order first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PathEvent {
    /// Event time.
    pub ts: Time,
    /// Tie-breaker among equal timestamps.
    pub message_id: String,
    /// The event's name.
    pub name: String,
    /// Whether it matches the anchor.
    pub anchor: bool,
    /// Whether it may be a step (its name is one of the analysis's, if it has some).
    pub step: bool,
}

/// One anchor and its path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Path {
    /// The anchor's time (ordered with `message_id`, the order of anchors).
    pub ts: Time,
    /// The anchor's `messageId`.
    pub message_id: String,
    /// The event names, in the order they happened, the anchor's included (first after it,
    /// last before it).
    pub names: Vec<String>,
}

/// An analysis's paths by user.
pub type PathsTrace = TraceAgent<ValSpine<UserId, Path, Time, isize>>;

/// A path analysis's shape, as its operator needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathsSpec {
    /// Steps after the anchor (true) or before it.
    pub after: bool,
    /// At most this many steps.
    pub depth: usize,
    /// Whether a repeat of the step before is left out.
    pub collapse: bool,
    /// Steps at most this far from the anchor.
    pub within: Option<Time>,
}

/// Each user's paths, from their events that may be anchors or steps, arranged by user.
pub fn paths<'s>(events: VecCollection<'s, Time, (UserId, PathEvent)>, spec: PathsSpec) -> Arranged<'s, PathsTrace> {
    type Builder = ValBuilder<UserId, Path, Time, isize>;
    type Spine = ValSpine<UserId, Path, Time, isize>;
    events.arrange_by_key_named("PathsInput").reduce_abelian::<_, Builder, Spine, _, _>(
        "Paths",
        move |_user, input, output| {
            // Sorted by `(timestamp, messageId)`; only present events count.
            let present: Vec<&PathEvent> = input.iter().filter(|(_, diff)| *diff > 0).map(|(e, _)| *e).collect();
            for path in user_paths(&present, spec) {
                output.push((path, 1));
            }
        },
        |vec, key, upds| {
            vec.clear();
            vec.extend(upds.drain(..).map(|(v, t, r)| ((*key, v), t, r)));
        },
    )
}

/// The steps of one user's events in one direction from anchors: each step's index (nearest
/// the anchor first along the list) and where the run of steps of its name ends.
struct Steps {
    at: Vec<usize>,
    run_end: Vec<usize>,
}

impl Steps {
    fn new(events: &[&PathEvent], after: bool) -> Steps {
        let mut at: Vec<usize> = (0..events.len()).filter(|i| events[*i].step).collect();
        if !after {
            at.reverse();
        }
        let mut run_end = vec![at.len(); at.len()];
        for p in (0..at.len().saturating_sub(1)).rev() {
            run_end[p] = if events[at[p]].name == events[at[p + 1]].name { run_end[p + 1] } else { p + 1 };
        }
        Steps { at, run_end }
    }
}

/// The paths of one user's events (in `(timestamp, messageId)` order), one per anchor. Each
/// anchor finds its first step by a binary search and moves a step (or, collapsing, a run of
/// one name) at a time: at most `depth` moves, however many events lie between.
pub fn user_paths(events: &[&PathEvent], spec: PathsSpec) -> Vec<Path> {
    let steps = Steps::new(events, spec.after);
    let mut out = Vec::new();
    for (i, anchor) in events.iter().enumerate().filter(|(_, e)| e.anchor) {
        // The first step strictly after (before) the anchor.
        let mut p = match spec.after {
            true => steps.at.partition_point(|s| *s <= i),
            false => steps.at.partition_point(|s| *s >= i),
        };
        let mut names = vec![anchor.name.clone()];
        while names.len() <= spec.depth && p < steps.at.len() {
            let e = events[steps.at[p]];
            // Events only get further from the anchor along the list.
            if spec.within.is_some_and(|w| e.ts.abs_diff(anchor.ts) > w) {
                break;
            }
            let repeat = names.last() == Some(&e.name);
            if !(spec.collapse && repeat) {
                names.push(e.name.clone());
            }
            p = if spec.collapse { steps.run_end[p] } else { p + 1 };
        }
        if !spec.after {
            names.reverse();
        }
        out.push(Path { ts: anchor.ts, message_id: anchor.message_id.clone(), names });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: Time, name: &str, anchor: bool, step: bool) -> PathEvent {
        PathEvent { ts, message_id: format!("m{ts}"), name: name.into(), anchor, step }
    }

    fn names(events: &[PathEvent], spec: PathsSpec) -> Vec<Vec<String>> {
        let refs: Vec<&PathEvent> = events.iter().collect();
        user_paths(&refs, spec).into_iter().map(|p| p.names).collect()
    }

    #[test]
    fn paths_follow_the_anchor_collapsed_or_not_within_the_window() {
        let events = [
            ev(1, "C", true, true),
            ev(2, "P", false, true),
            ev(3, "P", false, true),
            ev(4, "X", false, false),
            ev(5, "O", false, true),
            ev(9, "C", true, true),
        ];
        let spec = PathsSpec { after: true, depth: 3, collapse: false, within: None };
        assert_eq!(names(&events, spec), [vec!["C", "P", "P", "O"], vec!["C"]]);
        let spec = PathsSpec { collapse: true, ..spec };
        assert_eq!(names(&events, spec), [vec!["C", "P", "O", "C"], vec!["C"]]);
        let spec = PathsSpec { within: Some(3), ..spec };
        assert_eq!(names(&events, spec), [vec!["C", "P"], vec!["C"]]);
    }

    #[test]
    fn a_long_run_of_repeats_is_one_step_collapsed() {
        let mut events: Vec<PathEvent> = (0..2_000).map(|t| ev(t, "P", true, true)).collect();
        events.push(ev(5_000, "O", false, true));
        let spec = PathsSpec { after: true, depth: 2, collapse: true, within: None };
        let paths = names(&events, spec);
        assert_eq!(
            (paths[0].clone(), paths[1_999].clone()),
            (vec!["P".into(), "O".into()], vec!["P".into(), "O".into()])
        );
    }

    #[test]
    fn backwards_paths_lead_to_the_anchor() {
        let events =
            [ev(1, "A", false, true), ev(2, "B", false, true), ev(3, "B", false, true), ev(4, "O", true, true)];
        let spec = PathsSpec { after: false, depth: 2, collapse: true, within: None };
        assert_eq!(names(&events, spec), [vec!["A", "B", "O"]]);
        let spec = PathsSpec { collapse: false, ..spec };
        assert_eq!(names(&events, spec), [vec!["B", "B", "O"]]);
    }
}
