//! What the operators' unit tests share: events to feed them, and a one-worker dataflow that
//! enters timed updates and gathers what comes out.

use crate::Time;
use differential_dataflow::input::Input;
use differential_dataflow::{Data, VecCollection};
use journeyflow_types::{Event, Key, Kind, Props, Record};
use std::cell::RefCell;
use std::rc::Rc;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// An event (`Ok`) or an erasure of a user (`Err`), as retain's tests enter them.
pub type Entered = Result<Record, (crate::UserId, crate::retain::Erase)>;

/// An event of `user` at `ts`, its message id `<id>`.
pub fn event(ts: Time, user: &str, kind: Kind, name: &str, id: String, props: Props) -> Record {
    Record::from(&Event {
        ts,
        message_id: id,
        user_id: user.to_string(),
        user: Key::of(user),
        kind,
        name: name.into(),
        props,
    })
}

/// Enters `updates` (each `(data, time, diff)`, times not decreasing) into the collection
/// `build` makes a dataflow from, and returns what that dataflow's output carried once its
/// frontier passed `until`, as `(data, time, diff)` sorted.
pub fn drive<I, D, B>(updates: Vec<(I, Time, isize)>, until: Time, build: B) -> Vec<(D, Time, isize)>
where
    I: Data + Send + Sync,
    D: Data + Ord + Send,
    B: for<'s> FnOnce(VecCollection<'s, Time, I>) -> VecCollection<'s, Time, D> + Send + Sync + 'static,
{
    timely::execute_directly(move |worker| {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let sink = seen.clone();
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<Time, _, _>(|scope| {
            let (input, records) = scope.new_collection::<I, isize>();
            build(records).inner.inspect(move |update| sink.borrow_mut().push(update.clone())).probe_with(&probe);
            input
        });
        for (data, time, diff) in updates {
            input.advance_to(time);
            input.update(data, diff);
        }
        input.advance_to(until);
        input.flush();
        worker.step_while(|| probe.less_than(&until));
        let mut seen = seen.borrow().clone();
        seen.sort();
        seen
    })
}
