//! The journey operator: one keyed, stateful timely operator per journey, fed by the events
//! that matter to it and by its conditions' membership changes (exchanged by user), and by
//! lifecycle commands (on every worker). It holds one capability at the earliest thing still
//! to do (input, command, timer, schedule end) and processes a time only once the frontier
//! has passed it, so timers fire at their exact event time and output never depends on
//! batching or worker count. The per-user rules live in [`machine`]. Output records carry
//! their own event time; a message's timestamp is at most the times of the records in it.

pub mod machine;
pub mod plan;
pub mod record;
pub mod stats;

use crate::{SharedEvent, Time, UserId};
use differential_dataflow::VecCollection;
use journeyflow_types::{Key, KeyMap};
use machine::{Step, UserState};
use plan::JourneyPlan;
use record::{Command, JourneyOutput, Reason, Status};
use std::collections::BTreeSet;
use std::rc::Rc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concat};
use timely::dataflow::StreamVec;

/// One input of a user, in processing order at equal times: condition changes (by index)
/// before events (by timestamp, then `messageId`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum Item {
    Condition(u32, isize),
    Event(SharedEvent),
}

/// A lifecycle command for journey `journey`; `seq` orders commands given at one time.
pub type Control = (u32, u64, Command);

/// Runs journey `index` (compiled as `plan`) over deduplicated events and the membership
/// changes of `plan.conditions` (`(condition index, user)`, consolidated), obeying `control`
/// (the same stream on every worker). Starts in `initial` status. Inputs at or before `since`
/// are history (a journey installed over retained events): they set the users' condition
/// states but move nobody.
pub fn journey<'s>(
    plan: Rc<JourneyPlan>,
    index: u32,
    events: VecCollection<'s, Time, SharedEvent>,
    conditions: VecCollection<'s, Time, (u32, UserId)>,
    control: StreamVec<'s, Time, (Control, Time, isize)>,
    initial: Status,
    since: Option<Time>,
) -> StreamVec<'s, Time, JourneyOutput> {
    let relevant = plan.clone();
    let events = events.inner.flat_map(move |(e, t, r)| {
        let copies = if relevant.relevant(&e) { r.max(0) as usize } else { 0 };
        std::iter::repeat_n(((e.user, Item::Event(e)), t, 1), copies)
    });
    let changes = conditions.inner.map(|((i, user), t, r)| ((user, Item::Condition(i, r)), t, r));
    let items = events.concat(changes);
    let exchange = Exchange::new(|((user, _), _, _): &((Key, Item), Time, isize)| user.0 as u64);
    type Out = timely::container::CapacityContainerBuilder<Vec<JourneyOutput>>;
    let name = format!("Journey({})", plan.id());
    items.binary_frontier::<_, Out, _, _, _, _>(control, exchange, Pipeline, &name, move |initial_cap, _| {
        let mut cap: Option<Capability<Time>> = Some(initial_cap);
        let mut status = initial;
        let mut end_at = plan.schedule().end_at;
        let mut users: KeyMap<UserState> = KeyMap::default();
        let mut timers: BTreeSet<(Time, Key)> = BTreeSet::new();
        let mut pending: Vec<(Time, Key, Item)> = Vec::new();
        let mut commands: Vec<(Time, u64, Command)> = Vec::new();
        let mut out: Vec<JourneyOutput> = Vec::new();
        move |(items, items_frontier), (control, control_frontier), output| {
            let mut hold = |c: Option<Capability<Time>>| {
                if let Some(c) = c {
                    if cap.as_ref().is_none_or(|held| c.time() < held.time()) {
                        cap = Some(c);
                    }
                }
            };
            items.for_each(|c, data| {
                hold(c.retain_least(0));
                for ((user, item), t, r) in data.drain(..) {
                    if let Item::Condition(i, _) = item {
                        pending.push((t, user, Item::Condition(i, r)));
                    } else if r > 0 {
                        pending.push((t, user, item));
                    }
                }
            });
            control.for_each(|c, data| {
                hold(c.retain_least(0));
                for ((journey, seq, command), t, r) in data.drain(..) {
                    if journey == index && r > 0 {
                        commands.push((t, seq, command));
                    }
                }
            });
            if status == Status::Ended {
                pending.clear();
                commands.clear();
            }
            pending.sort_unstable();
            commands.sort_unstable();
            let complete = |t: &Time| !items_frontier.less_equal(t) && !control_frontier.less_equal(t);
            let mut done = 0;
            let mut send: Option<Capability<Time>> = None;
            loop {
                let next = earliest(
                    pending.get(done).map(|p| p.0),
                    commands.first().map(|c| c.0),
                    timers.first().map(|t| t.0),
                    end_at,
                    status,
                );
                let Some(time) = next.filter(complete) else { break };
                let here = pending[done..].partition_point(|p| p.0 == time) + done;
                // 0. Lifecycle: commands given at this time, then the scheduled end.
                let mut resumed = false;
                while commands.first().is_some_and(|c| c.0 == time) {
                    let (_, _, command) = commands.remove(0);
                    let before = status;
                    status = status.after(command);
                    resumed |= before == Status::Paused && status == Status::Ongoing;
                }
                if end_at.is_some_and(|e| e <= time) {
                    end_at = None;
                    status = status.after(Command::End);
                }
                let mut keys: Vec<Key> = Vec::new();
                if status == Status::Ended {
                    keys.extend(users.iter().filter(|(_, s)| s.at.is_some()).map(|(k, _)| *k));
                    keys.sort_unstable();
                    for user in keys.drain(..) {
                        let s = users.get_mut(&user).expect("listed");
                        Step { plan: &plan, journey: index, user, time, out: &mut out }.leave(s, Reason::Ended);
                    }
                    users.clear();
                    timers.clear();
                    pending.clear();
                    commands.clear();
                    done = 0;
                } else {
                    if resumed && plan.exit_when.is_some() {
                        keys.extend(users.iter().filter(|(_, s)| s.at.is_some()).map(|(k, _)| *k));
                        keys.sort_unstable();
                        for user in keys.drain(..) {
                            let s = users.get_mut(&user).expect("listed");
                            let timer = s.timer();
                            let mut step = Step { plan: &plan, journey: index, user, time, out: &mut out };
                            if step.exit_rule_holds(s) {
                                step.leave(s, Reason::ExitWhen);
                                timers.remove(&(timer.expect("a user inside waits on a timer"), user));
                            }
                        }
                    }
                    // Users with inputs at this time, and users whose timers are due.
                    keys.extend(pending[done..here].iter().map(|p| p.1));
                    if status == Status::Ongoing {
                        keys.extend(timers.range(..=(time, Key(u128::MAX))).map(|(_, k)| *k));
                    }
                    keys.sort_unstable();
                    keys.dedup();
                    let mut at = done;
                    for user in keys.drain(..) {
                        let s = users.entry(user).or_default();
                        let (timer, before) = (s.timer(), s.member);
                        let first = at;
                        while at < here && pending[at].1 == user && matches!(pending[at].2, Item::Condition(..)) {
                            if let Item::Condition(i, r) = pending[at].2 {
                                s.apply(i, r);
                            }
                            at += 1;
                        }
                        let mut step = Step { plan: &plan, journey: index, user, time, out: &mut out };
                        let moving = status == Status::Ongoing && since.is_none_or(|s| time > s);
                        if moving && at > first {
                            step.conditions_changed(s, before);
                        }
                        if moving && s.timer().is_some_and(|due| due <= time) {
                            step.fire(s);
                        }
                        while at < here && pending[at].1 == user {
                            if let (Item::Event(e), true) = (&pending[at].2, moving) {
                                step.event(s, e);
                            }
                            at += 1;
                        }
                        if timer != s.timer() {
                            if let Some(old) = timer {
                                timers.remove(&(old, user));
                            }
                            if let Some(new) = s.timer() {
                                timers.insert((new, user));
                            }
                        }
                        if s.is_empty() {
                            users.remove(&user);
                        }
                    }
                    done = here;
                }
                if send.is_none() && !out.is_empty() {
                    let held = cap.as_ref().expect("a capability is held at or before every pending time");
                    send = Some(held.delayed(&time));
                }
            }
            // Everything produced in this activation goes out in one message, under the earliest
            // time produced; each record carries its own time (one message per time would cost a
            // buffer per distinct time).
            if let Some(send) = send {
                output.session(&send).give_iterator(out.drain(..));
            }
            pending.drain(..done);
            // Hold the capability at the earliest thing left to do, or not at all.
            let left = earliest(
                pending.first().map(|p| p.0),
                commands.first().map(|c| c.0),
                timers.first().map(|t| t.0),
                end_at,
                status,
            );
            cap = match (cap.take(), left) {
                (Some(c), Some(t)) if *c.time() < t => Some(c.delayed(&t)),
                (c, Some(_)) => c,
                (_, None) => None,
            };
        }
    })
}

/// The earliest time with something to do: an input, a command, a timer (only while the
/// journey is ongoing: paused timers wait for the resume), the scheduled end (until ended).
fn earliest(
    input: Option<Time>,
    command: Option<Time>,
    timer: Option<Time>,
    end_at: Option<Time>,
    status: Status,
) -> Option<Time> {
    let timer = timer.filter(|_| status == Status::Ongoing);
    [input, command, timer, end_at.filter(|_| status != Status::Ended)].into_iter().flatten().min()
}
