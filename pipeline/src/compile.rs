//! Turns validated segment definitions into differential dataflow: one membership
//! collection per segment, over imports of the shared arrangements (the retained events by
//! name, the universe of users and their traits) into the program's dataflow. Each event
//! name a definition reads is read from the events arrangement once.

use crate::programs::TraitsTrace;
use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::wrappers::frontier::TraceFrontier;
use differential_dataflow::VecCollection;
use journeyflow_operators::journey::plan::JourneyPlan;
use journeyflow_operators::select::{select, EventsTrace};
use journeyflow_operators::sequence::{sequence, SequenceEvent, SequenceSpec};
use journeyflow_operators::{aggregate, complement, intersect, union, window_count, SharedEvent, Time, UserId, Users};
use journeyflow_types::template::TraitUse;
use journeyflow_types::{Condition, EventFilter, Value, ValueRef};
use std::collections::HashMap;

/// An import of the events arrangement into a program's dataflow.
pub type ImportedEvents<'s> = Arranged<'s, TraceFrontier<EventsTrace>>;

/// An import of the traits arrangement into a program's dataflow.
pub type ImportedTraits<'s> = Arranged<'s, TraceFrontier<TraitsTrace>>;

/// Builds membership collections for definitions in one program's dataflow.
pub struct Compiler<'s> {
    events: ImportedEvents<'s>,
    universe: Users<'s>,
    traits: ImportedTraits<'s>,
    segments: HashMap<String, Users<'s>>,
}

impl<'s> Compiler<'s> {
    /// A compiler over the imported events, universe and traits, and the memberships of the
    /// segments its definitions may refer to.
    pub fn over(
        events: ImportedEvents<'s>,
        universe: Users<'s>,
        traits: ImportedTraits<'s>,
        segments: HashMap<String, Users<'s>>,
    ) -> Self {
        Compiler { events, universe, traits, segments }
    }

    /// `logic` applied to the events named one of `names`.
    pub fn select<D, L>(&self, names: &[&str], logic: L) -> VecCollection<'s, Time, D>
    where
        D: differential_dataflow::Data,
        L: FnMut(&SharedEvent) -> Option<D> + 'static,
    {
        select(self.events.clone(), names, logic)
    }

    /// `logic` applied to the events some filter may match.
    fn matching<D, L>(&self, filters: &[&EventFilter], logic: L) -> VecCollection<'s, Time, D>
    where
        D: differential_dataflow::Data,
        L: FnMut(&SharedEvent) -> Option<D> + 'static,
    {
        let names: Vec<&str> = filters.iter().map(|f| f.event.as_str()).collect();
        self.select(&names, logic)
    }

    /// Every user with a retained event.
    pub fn universe(&self) -> Users<'s> {
        self.universe.clone()
    }

    /// Users whose trait `name` has a value for which `keep` holds (read in place, without
    /// copying the traits it passes over).
    fn trait_users<F>(&self, name: String, keep: F) -> Users<'s>
    where
        F: Fn(&Value) -> bool + 'static,
    {
        self.traits.clone().flat_map_ref(move |(user, key), value| (*key == name && keep(value)).then_some(*user))
    }

    /// The values of the traits `read` names, per `(user, key)` (none when nothing is read;
    /// the keys are tested in place, only those read are copied).
    pub fn traits_read(&self, read: Option<TraitUse>) -> VecCollection<'s, Time, ((UserId, String), Value)> {
        let Some(read) = read else {
            return self.select(&[], |_| None);
        };
        self.traits
            .clone()
            .flat_map_ref(move |(user, key), value| read.reads(key).then(|| ((*user, key.clone()), value.clone())))
    }

    /// An empty set of users in this dataflow.
    fn empty(&self) -> Users<'s> {
        self.select(&[], |_| None)
    }

    /// The membership changes of a journey's conditions, tagged with their index and consolidated.
    pub fn journey_conditions(&mut self, plan: &JourneyPlan) -> VecCollection<'s, Time, (u32, UserId)> {
        let tagged: Vec<_> =
            plan.conditions.iter().enumerate().map(|(i, c)| self.condition(c).map(move |u| (i as u32, u))).collect();
        let none = self.empty().map(|u| (0u32, u));
        none.concatenate(tagged).consolidate()
    }

    /// The users for whom a condition holds (references to segments compiled before).
    pub fn condition(&mut self, condition: &Condition) -> Users<'s> {
        match condition {
            Condition::All(cs) => {
                let sets = cs.iter().map(|c| self.condition(c)).collect();
                intersect::intersect(sets)
            }
            Condition::Any(cs) => {
                let sets = cs.iter().map(|c| self.condition(c)).collect();
                union::union(sets)
            }
            Condition::Not(c) => {
                let inner = self.condition(c);
                complement::complement(self.universe(), inner)
            }
            // Validation guarantees references resolve and come first.
            Condition::InSegment(id) => self.segments.get(id).cloned().unwrap_or_else(|| self.empty()),
            Condition::Trait(p) => {
                let p = p.clone();
                if p.op == journeyflow_types::Op::NotExists {
                    let name = p.path.clone();
                    let having = self.trait_users(name, |_| true);
                    complement::complement(self.universe(), having)
                } else {
                    self.trait_users(p.path.clone(), move |v| p.test(Some(v)))
                }
            }
            Condition::Performed(p) => {
                let filter = p.filter.clone();
                let matches = self.matching(&[&p.filter], move |e| filter.matches(e).then(|| (e.user(), e.ts())));
                let window = p.within.map(|w| w.0);
                match (p.at_least, p.at_most) {
                    (0, None) => self.universe(),
                    // At most m: not at least m + 1.
                    (0, Some(m)) => {
                        let over = window_count::window_count(matches, window, m + 1, None);
                        complement::complement(self.universe(), over)
                    }
                    (least, most) => window_count::window_count(matches, window, least, most),
                }
            }
            Condition::Aggregate(a) => {
                let (filter, property) = (a.filter.clone(), a.property.clone());
                let values = self.matching(&[&a.filter], move |e| {
                    if !filter.matches(e) {
                        return None;
                    }
                    let value = e.prop(&property).filter(|v| *v != ValueRef::Null)?.to_value();
                    Some(((e.user(), value), e.ts()))
                });
                aggregate::aggregate(values, a.within.map(|w| w.0), a.func, a.op, a.value)
            }
            Condition::Sequence(s) => {
                let (steps, then_not) = (s.steps.clone(), s.then_not.clone());
                let read: Vec<&EventFilter> = s.steps.iter().chain(&s.then_not).collect();
                let events = self.matching(&read, move |e| {
                    let mask =
                        steps.iter().enumerate().filter(|(_, f)| f.matches(e)).fold(0u64, |m, (i, _)| m | 1 << i);
                    let then_not = then_not.as_ref().is_some_and(|f| f.matches(e));
                    (mask != 0 || then_not).then(|| {
                        let message_id = e.message_id().to_string();
                        (e.user(), SequenceEvent { ts: e.ts(), message_id, steps: mask, then_not })
                    })
                });
                let spec = SequenceSpec { steps: s.steps.len(), within: s.within.0, min_age: s.min_age.0 };
                sequence(events, spec)
            }
        }
    }
}
