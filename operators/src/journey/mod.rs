//! The journey operator: one keyed, stateful timely operator per journey, fed by the events
//! that matter to it and by its conditions' membership changes (exchanged by user), and by
//! lifecycle commands (on every worker). It holds one capability at the earliest thing still
//! to do (input, command, timer, schedule end) and processes a time only once the frontier
//! has passed it, so timers fire at their exact event time and output never depends on
//! batching or worker count. The per-user rules live in [`machine`]. Output records carry
//! their own event time; a message's timestamp is at most the times of the records in it.
//! On a [`Command::Snapshot`] it leaves its users' states as of that time ([`Snapshot`]), and
//! it can start from such states (a restart that no longer has the events behind them).

pub mod handover;
pub mod machine;
pub mod plan;
pub mod quota;
pub mod record;
pub mod stats;

use crate::{SharedEvent, Time, UserId};
use differential_dataflow::VecCollection;
use handover::{Handover, Left};
use journeyflow_types::{Key, KeyMap, Migration, Placement, Value};
use machine::{Position, Step, UserState};
use plan::{JourneyPlan, PlanEntry};
use record::{Command, JourneyOutput, Reason, Status};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Concat};
use timely::dataflow::StreamVec;

/// One input of a user, in processing order at equal times: a state restored from a snapshot,
/// a deletion, condition changes (by index), trait changes, entries from outside (by their
/// sequence number), events (by timestamp, then `messageId`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum Item {
    Restored(Box<UserState>),
    Deleted,
    Condition(u32, isize),
    Trait(String, Value, isize),
    Entered(u64, Option<Arc<str>>),
    Event(SharedEvent),
}

/// A lifecycle command for journey `journey`; `seq` orders commands given at one time.
pub type Control = (u32, u64, Command);

/// An entry from outside: the user, a sequence number ordering entries at one time, and the
/// context (JSON text) its templates read.
pub type Entry = (UserId, u64, Option<Arc<str>>);

/// One version's state on one worker once every input through `time` is done: its status, and
/// each user's state but for condition memberships (a restore computes those again from the
/// history through `time`), in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The time it is as of.
    pub time: Time,
    /// The status then.
    pub status: Status,
    /// Users with anything to keep.
    pub users: Vec<(Key, UserState)>,
    /// What the quota has counted (left by the quota's operator, on the worker counting it).
    pub quota: Option<quota::QuotaState>,
}

/// Where an operator leaves the snapshots [`Command::Snapshot`] asks for.
pub type Snapshots = Rc<RefCell<Vec<Snapshot>>>;

/// How a journey operator starts.
pub struct Start {
    /// The status it starts in.
    pub status: Status,
    /// Inputs at or before this time are history (a journey installed over retained events):
    /// they set the users' condition states but move nobody.
    pub since: Option<Time>,
    /// Where this version leaves its users when a [`Command::Retire`] comes.
    pub retire: Handover,
    /// For a new version: the previous version's handover, and how to place its users. They
    /// are taken over at `since`, after the history, before anything later moves.
    pub takeover: Option<(Handover, Migration)>,
    /// Where it leaves its snapshots.
    pub snapshots: Snapshots,
}

impl Start {
    /// A first version in `status`, installed as of `since` (if not from the beginning).
    pub fn new(status: Status, since: Option<Time>) -> Start {
        Start { status, since, retire: Handover::default(), takeover: None, snapshots: Snapshots::default() }
    }
}

/// Runs journey `index` (compiled as `plan`) over deduplicated events, the membership
/// changes of `plan.conditions` (`(condition index, user)`, consolidated) and the changes of
/// the users' traits the plan reads (`((user, key), value)`: others are dropped), letting in
/// the users of `entries` (entries from outside) at their times, obeying `control` (the same
/// stream on every worker), starting as `start` says. A user in `deletions` at `T`
/// (an insertion) is canceled at `T` if inside (reason `deleted`), their events at `T` are not
/// read, and their state is forgotten but for the conditions' memberships. A user in
/// `restored` at `T` (at most `since`: a restart from a [`Snapshot`]) takes that state then,
/// condition memberships aside.
#[allow(clippy::too_many_arguments)]
pub fn journey<'s>(
    plan: Rc<JourneyPlan>,
    index: u32,
    events: VecCollection<'s, Time, SharedEvent>,
    conditions: VecCollection<'s, Time, (u32, UserId)>,
    traits: VecCollection<'s, Time, ((UserId, String), Value)>,
    entries: VecCollection<'s, Time, Entry>,
    deletions: VecCollection<'s, Time, UserId>,
    control: StreamVec<'s, Time, (Control, Time, isize)>,
    restored: StreamVec<'s, Time, ((Key, UserState), Time, isize)>,
    start: Start,
) -> StreamVec<'s, Time, JourneyOutput> {
    let relevant = plan.clone();
    let events = events.inner.flat_map(move |(e, t, r)| {
        let copies = if relevant.relevant(&e) { r.max(0) as usize } else { 0 };
        std::iter::repeat_n(((e.user(), Item::Event(e)), t, 1), copies)
    });
    let changes = conditions.inner.map(|((i, user), t, r)| ((user, Item::Condition(i, r)), t, r));
    let reads = plan.clone();
    let traits = traits.inner.flat_map(move |(((user, key), value), t, r)| {
        let read = reads.traits.as_ref().is_some_and(|u| u.reads(&key));
        read.then_some(((user, Item::Trait(key, value, r)), t, r))
    });
    let deleted = deletions.inner.flat_map(|(user, t, r)| (r > 0).then_some(((user, Item::Deleted), t, 1)));
    let restored = restored.map(|((user, state), t, _)| ((user, Item::Restored(Box::new(state))), t, 1));
    let entries = entries.inner.flat_map(|((user, seq, context), t, r)| {
        std::iter::repeat_n(((user, Item::Entered(seq, context)), t, 1), r.max(0) as usize)
    });
    let items = events.concat(changes).concat(traits).concat(entries).concat(deleted).concat(restored);
    let exchange = Exchange::new(|((user, _), _, _): &((Key, Item), Time, isize)| user.0 as u64);
    type Out = timely::container::CapacityContainerBuilder<Vec<JourneyOutput>>;
    let name = format!("Journey({})", plan.id());
    let scope = items.scope();
    items.binary_frontier::<_, Out, _, _, _, _>(control, exchange, Pipeline, &name, move |initial_cap, info| {
        let activator = scope.activator_for(info.address);
        let Start { status: initial, since, retire, mut takeover, snapshots } = start;
        let mut cap: Option<Capability<Time>> = Some(initial_cap);
        let mut status = initial;
        let mut retired = false;
        let mut end_at = plan.schedule().end_at;
        // Set when the scheduled end passes while the history before a takeover is read.
        let mut ended_before_takeover = false;
        let mut users: KeyMap<UserState> = KeyMap::default();
        let mut timers: BTreeSet<(Time, Key)> = BTreeSet::new();
        let mut pending: Vec<(Time, Key, Item)> = Vec::new();
        let mut commands: Vec<(Time, u64, Command)> = Vec::new();
        let mut out: Vec<JourneyOutput> = Vec::new();
        // A snapshot asked for as of this time, taken once nothing at or before it is left.
        let mut snapshot_due: Option<Time> = None;
        // A scheduled entry's next occurrence: counted from the first time this operator looks
        // at (no member of the segment is known here before it).
        let occurrences = match &plan.entry {
            PlanEntry::Scheduled { occurrences, condition } => Some((occurrences.clone(), *condition)),
            _ => None,
        };
        let mut occurrence: Option<Time> = None;
        let mut occurrences_started = false;
        let take = move |time: Time, status: Status, users: &KeyMap<UserState>| {
            let mut kept: Vec<(Key, UserState)> = users
                .iter()
                .map(|(k, s)| (*k, UserState { member: 0, traits: Default::default(), ..s.clone() }))
                .filter(|(_, s)| !s.is_empty())
                .collect();
            kept.sort_unstable_by_key(|(k, _)| *k);
            snapshots.borrow_mut().push(Snapshot { time, status, users: kept, quota: None });
        };
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
                    match item {
                        Item::Condition(i, _) => pending.push((t, user, Item::Condition(i, r))),
                        Item::Trait(key, value, _) => pending.push((t, user, Item::Trait(key, value, r))),
                        item if r > 0 => pending.push((t, user, item)),
                        _ => {}
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
            // An ended version still hands over (to a successor that will be ended too), and
            // leaves snapshots.
            if status == Status::Ended || retired {
                pending.clear();
                commands.retain(|c| matches!(c.2, Command::Retire | Command::Snapshot) && !retired);
            }
            pending.sort_unstable();
            commands.sort_unstable();
            let complete = |t: &Time| !items_frontier.less_equal(t) && !control_frontier.less_equal(t);
            let mut done = 0;
            let mut send: Option<Capability<Time>> = None;
            while !retired {
                let next = earliest(
                    pending.get(done).map(|p| p.0),
                    commands.first().map(|c| c.0),
                    next_timer(&timers, since).into_iter().chain(occurrence).min(),
                    end_at,
                    since.filter(|_| takeover.is_some()),
                    status,
                );
                let Some(time) = next.filter(complete) else { break };
                // Occurrences before this time were not for an ongoing journey (paused, or
                // history): none is made up later.
                if let Some((schedule, _)) = &occurrences {
                    if !occurrences_started || occurrence.is_some_and(|o| o < time) {
                        (occurrence, occurrences_started) = (schedule.first_from(time), true);
                    }
                }
                if let Some(due) = snapshot_due.filter(|due| time > *due) {
                    take(due, status, &users);
                    snapshot_due = None;
                }
                let here = pending[done..].partition_point(|p| p.0 == time) + done;
                // 0. Lifecycle: commands given at this time, then the scheduled end.
                let (mut resumed, mut retiring) = (false, false);
                while commands.first().is_some_and(|c| c.0 == time) {
                    let (_, _, command) = commands.remove(0);
                    let before = status;
                    status = status.after(command);
                    resumed |= before == Status::Paused && status == Status::Ongoing;
                    retiring |= command == Command::Retire;
                    if command == Command::Snapshot {
                        snapshot_due = Some(time);
                    }
                }
                if end_at.is_some_and(|e| e <= time) {
                    end_at = None;
                    if takeover.is_some() && since.is_some_and(|s| time <= s) {
                        // Published after its own end: the history still sets the condition
                        // states the previous version's users are placed with; it ends then.
                        ended_before_takeover = true;
                    } else {
                        status = status.after(Command::End);
                    }
                }
                let mut keys: Vec<Key> = Vec::new();
                if status == Status::Ended {
                    cancel_all(&plan, index, time, &mut users, &mut timers, &mut out);
                    pending.clear();
                    commands.retain(|c| matches!(c.2, Command::Retire | Command::Snapshot));
                    done = 0;
                } else {
                    // History (at or before `since`) sets condition states but moves nobody.
                    let moving = status == Status::Ongoing && since.is_none_or(|s| time > s);
                    let scheduled = occurrence == Some(time) && moving;
                    // Users with inputs at this time, users whose timers are due, and at an
                    // occurrence the members of the scheduled entry's segment.
                    keys.extend(pending[done..here].iter().map(|p| p.1));
                    if status == Status::Ongoing {
                        keys.extend(timers.range(..=(time, Key(u128::MAX))).map(|(_, k)| *k));
                    }
                    if let Some((_, condition)) = occurrences.as_ref().filter(|_| scheduled) {
                        keys.extend(users.iter().filter(|(_, s)| s.member & (1 << condition) != 0).map(|(k, _)| *k));
                    }
                    // A resume applies the exit rule to everyone inside (with this time's
                    // condition changes, as every exit rule is).
                    let recheck = resumed && plan.exit_when.is_some();
                    if recheck {
                        keys.extend(users.iter().filter(|(_, s)| s.at.is_some()).map(|(k, _)| *k));
                    }
                    keys.sort_unstable();
                    keys.dedup();
                    let mut at = done;
                    for user in keys.drain(..) {
                        let s = users.entry(user).or_default();
                        let (timer, before) = (s.timer(), s.member);
                        while at < here && pending[at].1 == user {
                            let Item::Restored(state) = &pending[at].2 else { break };
                            s.replace((**state).clone());
                            at += 1;
                        }
                        let mut deleted = false;
                        while at < here && pending[at].1 == user && pending[at].2 == Item::Deleted {
                            deleted = true;
                            at += 1;
                        }
                        let first = at;
                        while at < here && pending[at].1 == user && matches!(pending[at].2, Item::Condition(..)) {
                            if let Item::Condition(i, r) = pending[at].2 {
                                s.apply(i, r);
                            }
                            at += 1;
                        }
                        let conditions_changed = at > first;
                        // Changes of one value at one time are summed first: a value set and
                        // removed before this operator's start arrive together.
                        while at < here && pending[at].1 == user {
                            let Item::Trait(key, value, _) = &pending[at].2 else { break };
                            let mut net = 0;
                            while let Some((_, u, Item::Trait(k, v, r))) = pending.get(at).filter(|_| at < here) {
                                if u != &user || k != key || v != value {
                                    break;
                                }
                                net += r;
                                at += 1;
                            }
                            s.apply_trait(key, value, net);
                        }
                        let mut step = Step { plan: &plan, journey: index, user, time, out: &mut out };
                        if deleted {
                            // Out (in any status: the person is gone, not moved), held actions
                            // dropped, entries and caps forgotten; their events at this time
                            // went with them.
                            step.leave(s, Reason::Deleted);
                            s.replace(UserState::default());
                        } else {
                            if moving && (conditions_changed || recheck) {
                                step.conditions_changed(s, before);
                            }
                            if scheduled {
                                step.occurrence(s);
                            }
                            while let Some((_, _, Item::Entered(_, context))) =
                                pending.get(at).filter(|p| at < here && p.1 == user)
                            {
                                if moving {
                                    step.api_entry(s, context.as_ref());
                                }
                                at += 1;
                            }
                            if moving && s.timer().is_some_and(|due| due <= time) {
                                step.fire(s);
                            }
                        }
                        while at < here && pending[at].1 == user {
                            if let (Item::Event(e), true) = (&pending[at].2, moving && !deleted) {
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
                if let Some((schedule, _)) = occurrences.as_ref().filter(|_| occurrence == Some(time)) {
                    occurrence = schedule.first_from(time.saturating_add(1));
                }
                // A new version takes the previous one's users over once its history is read.
                if takeover.is_some() && since == Some(time) {
                    let (handover, migration) = takeover.as_ref().expect("checked");
                    let Some(left) = handover.take(&activator) else { break };
                    // A version whose schedule ended before it was published ends as it starts.
                    let ended = status == Status::Ended || ended_before_takeover;
                    status = left.status;
                    let ongoing = status == Status::Ongoing && !ended;
                    migrate(&plan, index, left, migration, time, ongoing, &mut users, &mut timers, &mut out);
                    takeover = None;
                    if ended {
                        status = Status::Ended;
                        cancel_all(&plan, index, time, &mut users, &mut timers, &mut out);
                    }
                }
                // A retiring version leaves its users to the next one at the end of the time
                // (a snapshot then is of the users it leaves).
                if retiring {
                    if let Some(due) = snapshot_due.take() {
                        take(due, status, &users);
                    }
                    let mut left: Vec<(Key, UserState)> = users.drain().collect();
                    left.sort_unstable_by_key(|(k, _)| *k);
                    retire.leave(Left { plan: plan.clone(), status, users: left });
                    (timers, retired) = (BTreeSet::new(), true);
                    pending.clear();
                    commands.clear();
                    done = 0;
                }
                if send.is_none() && !out.is_empty() {
                    let held = cap.as_ref().expect("a capability is held at or before every pending time");
                    send = Some(held.delayed(&time));
                }
            }
            // Nothing at or before a snapshot's time is left once the loop stops short of a
            // later time.
            if let Some(due) = snapshot_due.take().filter(|_| !retired) {
                take(due, status, &users);
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
                next_timer(&timers, since).into_iter().chain(occurrence).min(),
                end_at,
                since.filter(|_| takeover.is_some()),
                status,
            )
            .filter(|_| !retired);
            cap = match (cap.take(), left) {
                (Some(c), Some(t)) if *c.time() < t => Some(c.delayed(&t)),
                (c, Some(_)) => c,
                (_, None) => None,
            };
        }
    })
}

/// Cancels every user inside at `time` (the journey ended) and forgets every user.
fn cancel_all(
    plan: &JourneyPlan,
    index: u32,
    time: Time,
    users: &mut KeyMap<UserState>,
    timers: &mut BTreeSet<(Time, Key)>,
    out: &mut Vec<JourneyOutput>,
) {
    let mut inside: Vec<Key> = users.iter().filter(|(_, s)| s.at.is_some()).map(|(k, _)| *k).collect();
    inside.sort_unstable();
    for user in inside {
        let s = users.get_mut(&user).expect("listed");
        Step { plan, journey: index, user, time, out }.leave(s, Reason::Ended);
    }
    users.clear();
    timers.clear();
}

/// Places the users a previous version `left` in `plan` at `time`, as `migration` says: each
/// user keeps their entries and sent actions; a user at a node gets one `migrated` transition
/// from their old node (an index of the old plan) to where they are placed, or out. When
/// `ongoing`, the new version's exit rule then applies (a paused journey applies it on resume).
#[allow(clippy::too_many_arguments)]
fn migrate(
    plan: &JourneyPlan,
    index: u32,
    left: Left,
    migration: &Migration,
    time: Time,
    ongoing: bool,
    users: &mut KeyMap<UserState>,
    timers: &mut BTreeSet<(Time, Key)>,
    out: &mut Vec<JourneyOutput>,
) {
    let old = &left.plan;
    let places: Vec<Option<(u32, bool)>> = old
        .node_ids
        .iter()
        .map(|id| match migration.place(&old.definition, id, &plan.definition) {
            Placement::Stay(n) => Some((plan.node_index(n), true)),
            Placement::Move(n) => Some((plan.node_index(n), false)),
            Placement::Exit => None,
        })
        .collect();
    let reason = Reason::Migrated(old.version);
    for (user, was) in left.users {
        let s = users.entry(user).or_default();
        s.entries = was.entries;
        s.last_entry = was.last_entry;
        s.sent = was.sent;
        s.cause = was.cause.filter(|_| plan.keeps_event);
        s.context = was.context.filter(|_| plan.keeps_context);
        if let Some(p) = was.at {
            let mut step = Step { plan, journey: index, user, time, out };
            match places[p.node as usize] {
                Some((node, true)) => step.stay(s, p.node, Position { node, ..p }, reason),
                Some((node, false)) => step.arrive(s, Some(p.node), node, reason),
                None => {
                    // Out from the old node (`leave` records where the user was).
                    s.at = Some(p);
                    step.leave(s, reason);
                }
            }
            if ongoing && step.exit_rule_holds(s) {
                step.leave(s, Reason::ExitWhen);
            }
            if let Some(due) = s.timer() {
                timers.insert((due, user));
            }
        }
        if s.is_empty() {
            users.remove(&user);
        }
    }
}

/// The earliest timer after the history (through `since`): one at or before it (restored from
/// a snapshot) moves nobody then, and fires with the first time after it.
fn next_timer(timers: &BTreeSet<(Time, Key)>, since: Option<Time>) -> Option<Time> {
    match since {
        Some(s) => timers.range((s.saturating_add(1), Key(0))..).next().map(|t| t.0),
        None => timers.first().map(|t| t.0),
    }
}

/// The earliest time with something to do: an input, a command, a timer (only while the
/// journey is ongoing: paused timers wait for the resume), the scheduled end (until ended), the
/// takeover of a previous version's users.
fn earliest(
    input: Option<Time>,
    command: Option<Time>,
    timer: Option<Time>,
    end_at: Option<Time>,
    takeover: Option<Time>,
    status: Status,
) -> Option<Time> {
    let timer = timer.filter(|_| status == Status::Ongoing);
    [input, command, timer, end_at.filter(|_| status != Status::Ended), takeover].into_iter().flatten().min()
}
