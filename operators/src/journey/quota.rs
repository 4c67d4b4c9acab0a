//! A journey's quota: at most `max_actions` sent actions over all its users (of one channel,
//! if it names one), in all or in any trailing `per`. The users' operators decide each
//! action alone; this operator, on one worker, takes the journey's action records, holds them
//! until their time is complete, and goes through them in `(time, action_id)` order: a sent
//! action over the quota becomes `suppressed_by_quota` (not sent, its payload not written).
//! The order is total and known to users, so which actions pass never depends on workers or
//! batches; then they go back to the worker owning their user. Transitions pass by untouched. The recent sends it counts are left in the
//! version's snapshots and restored from them; a new version counts afresh.

use super::plan::JourneyPlan;
use super::record::{ActionRecord, ActionStatus, Command, JourneyOutput};
use super::{Control, Snapshots};
use crate::held::Held;
use crate::Time;
use journeyflow_types::journey::{action_id, Quota};
use std::collections::VecDeque;
use std::rc::Rc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::operators::{Concat, Exchange as _};
use timely::dataflow::StreamVec;

/// What a quota has counted: the times of the sends it let pass within the trailing window
/// (with `per`), or how many it let pass in all (without).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuotaState {
    /// Sends within the window, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub recent: VecDeque<Time>,
    /// Sends in all.
    #[serde(default)]
    pub total: u64,
}

impl QuotaState {
    /// Whether one more send at `t` fits `quota` (and counts it if so).
    pub fn admit(&mut self, quota: &Quota, t: Time) -> bool {
        match quota.per {
            Some(per) => {
                while self.recent.front().is_some_and(|s| s.saturating_add(per.0) <= t) {
                    self.recent.pop_front();
                }
                if self.recent.len() as u64 >= quota.max_actions {
                    return false;
                }
                self.recent.push_back(t);
            }
            None => {
                if self.total >= quota.max_actions {
                    return false;
                }
            }
        }
        self.total += 1;
        true
    }
}

/// Applies `plan`'s quota (if it has one) to journey `index`'s records, starting from
/// `initial`; a [`Command::Snapshot`] in `control` leaves the state as of its time in the
/// snapshot `snapshots` holds for that time.
pub fn quota<'s>(
    plan: Rc<JourneyPlan>,
    index: u32,
    records: StreamVec<'s, Time, JourneyOutput>,
    control: StreamVec<'s, Time, (Control, Time, isize)>,
    initial: QuotaState,
    snapshots: Snapshots,
) -> StreamVec<'s, Time, JourneyOutput> {
    let Some(limit) = plan.definition.quota.clone() else { return records };
    let mut parts = records.partition(2, |r| (u64::from(matches!(r, JourneyOutput::Action(_))), r));
    let (actions, transitions) = (parts.pop().expect("two parts"), parts.pop().expect("two parts"));
    let names = plan.clone();
    // Each action with its id, all to one worker.
    let keyed = actions.flat_map(move |r| match r {
        JourneyOutput::Action(a) => {
            let node = &names.node_ids[a.node as usize];
            Some((action_id(names.id(), a.version, a.user, node, a.reached), a))
        }
        JourneyOutput::Transition(_) | JourneyOutput::Conversion(_) => None,
    });
    let one = Exchange::new(move |_: &(String, ActionRecord)| u64::from(index));
    type Out = timely::container::CapacityContainerBuilder<Vec<JourneyOutput>>;
    let name = format!("Quota({})", plan.id());
    let scope = keyed.scope();
    // Only the worker holding the count leaves it in its snapshots.
    let counts_here = scope.index() == index as usize % scope.peers();
    let passed = keyed.binary_frontier::<_, Out, _, _, _, _>(control, one, Pipeline, &name, move |_, _| {
        // Each record with its id and its arrival: a user's records arrive in the order they
        // happened, which the output keeps.
        let mut held: Held<(String, u64, ActionRecord)> = Held::default();
        let mut arrived = 0u64;
        let mut state = initial;
        // Snapshot times asked for and not yet left.
        let mut asked: Vec<Time> = Vec::new();
        move |(input, input_frontier), (commands, control_frontier), output| {
            input.for_each(|cap, data| {
                let records = data.drain(..).map(|(id, a)| {
                    arrived += 1;
                    (a.time, (id, arrived, a))
                });
                held.hold(&cap, records)
            });
            commands.for_each(|_, data| {
                for ((journey, _, command), t, r) in data.drain(..) {
                    if journey == index && command == Command::Snapshot && r > 0 && counts_here {
                        asked.push(t);
                    }
                }
            });
            asked.sort_unstable();
            let complete = |t: &Time| !input_frontier.less_equal(t) && !control_frontier.less_equal(t);
            let leave = |asked: &mut Vec<Time>, state: &QuotaState, before: Time| {
                while asked.first().is_some_and(|s| *s < before) {
                    let time = asked.remove(0);
                    // The journey operator on this worker left its snapshot before its output
                    // frontier passed `time`, so before this operator sees that time complete.
                    let mut left = snapshots.borrow_mut();
                    let found = left.iter_mut().find(|s| s.time == time);
                    debug_assert!(found.is_some(), "no journey snapshot as of {time} for the quota");
                    if let Some(s) = found {
                        s.quota = Some(state.clone());
                    }
                }
            };
            if let Some((cap, taken)) = held.take_when(complete) {
                // Decided in (time, action_id) order, sent on in the order they arrived.
                let mut decided: Vec<(Time, u64, ActionRecord)> = Vec::with_capacity(taken.len());
                for (time, (_, seq, mut a)) in taken {
                    leave(&mut asked, &state, time);
                    let counted = limit.channel.as_deref().is_none_or(|c| plan.channel(a.node) == Some(c));
                    if a.status == ActionStatus::Sent && counted && !state.admit(&limit, time) {
                        a.status = ActionStatus::SuppressedByQuota;
                        a.rendered = None;
                    }
                    decided.push((time, seq, a));
                }
                decided.sort_unstable_by_key(|(time, seq, _)| (*time, *seq));
                output.session(&cap).give_iterator(decided.into_iter().map(|(_, _, a)| JourneyOutput::Action(a)));
            }
            // Snapshots whose time is complete with nothing held at or before it.
            let pending = held.earliest();
            while let Some(&time) = asked.first().filter(|t| complete(t) && pending.is_none_or(|p| p > **t)) {
                leave(&mut asked, &state, time + 1);
            }
        }
    });
    // Back to the worker owning each user (the journey operator's), where its records are
    // written and remembered.
    let owned = passed.exchange(|r: &JourneyOutput| r.user().0 as u64);
    transitions.concat(owned)
}
