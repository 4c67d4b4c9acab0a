//! How many records this process's arrangements hold, and how many wait in their batchers:
//! counted from differential's arrange log (each batch made, merged or dropped says its
//! length), for `/metrics`. The arrangements are most of what the engine holds in memory.

use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use timely::worker::Worker;

/// Counts into `arranged` and `batched` the records of every arrangement `worker` builds from
/// now on (call before building dataflows). Returns whether its log could be registered.
pub fn count(worker: &mut Worker, arranged: Arc<AtomicI64>, batched: Arc<AtomicI64>) -> bool {
    let Some(mut register) = worker.log_register() else { return false };
    register.insert::<DifferentialEventBuilder, _>("differential/arrange", move |_, events| {
        let Some(events) = events else { return };
        let (mut held, mut waiting) = (0i64, 0i64);
        for (_, event) in events.iter() {
            match event {
                DifferentialEvent::Batch(b) => held += b.length as i64,
                DifferentialEvent::Merge(m) => {
                    if let Some(merged) = m.complete {
                        held += merged as i64 - (m.length1 + m.length2) as i64;
                    }
                }
                DifferentialEvent::Drop(d) => held -= d.length as i64,
                DifferentialEvent::Batcher(b) => waiting += b.records_diff as i64,
                DifferentialEvent::MergeShortfall(_) | DifferentialEvent::TraceShare(_) => {}
            }
        }
        arranged.fetch_add(held, Ordering::Relaxed);
        batched.fetch_add(waiting, Ordering::Relaxed);
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use differential_dataflow::input::Input;
    use timely::dataflow::operators::Probe;

    /// Every record is counted once however the batches merge, and none is left once the
    /// arrangement is gone.
    #[test]
    fn counts_what_an_arrangement_holds() {
        let arranged = Arc::new(AtomicI64::new(0));
        let batched = Arc::new(AtomicI64::new(0));
        let (a, b) = (arranged.clone(), batched.clone());
        let seen = timely::execute_directly(move |worker| {
            assert!(count(worker, a.clone(), b.clone()));
            let (mut input, probe, trace) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, data) = scope.new_collection::<u64, isize>();
                let arranged = data.arrange_by_self();
                (input, arranged.stream.probe().0, arranged.trace)
            });
            let mut seen = Vec::new();
            for round in 0..8u64 {
                for x in 0..1000 {
                    input.update(x + round * 1000, 1);
                }
                input.advance_to(round + 1);
                input.flush();
                worker.step_while(|| probe.less_than(input.time()));
                seen.push(a.load(Ordering::Relaxed));
            }
            drop((input, trace));
            while worker.has_dataflows() {
                worker.step();
            }
            seen.push(a.load(Ordering::Relaxed));
            seen
        });
        assert_eq!(seen, [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 0]);
        assert_eq!(batched.load(Ordering::Relaxed), 0);
    }
}
