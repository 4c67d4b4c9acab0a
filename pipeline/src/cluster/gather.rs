//! Brings one value from every worker of every process to worker 0 ([`gather`]), or to every
//! worker ([`share`]), through a dataflow (so across processes too): how `replay` agrees on
//! the time to run to and collects what the workers produced.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Input};
use timely::dataflow::operators::Exchange;
use timely::worker::Worker;
use timely::ExchangeData;

/// Every worker calls this with its value; worker 0 gets them all (in worker order), the
/// others an empty vector.
pub fn gather<T: ExchangeData + Clone>(worker: &mut Worker, value: T) -> Vec<T> {
    collect(worker, value, false)
}

/// Every worker calls this with its value and gets everyone's (in worker order).
pub fn share<T: ExchangeData + Clone>(worker: &mut Worker, value: T) -> Vec<T> {
    collect(worker, value, true)
}

fn collect<T: ExchangeData + Clone>(worker: &mut Worker, value: T, everyone: bool) -> Vec<T> {
    let got = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(Cell::new(false));
    let index = worker.index();
    let mut input = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<(usize, T)>();
        // Every worker gets every value, or worker 0 does.
        let stream = if everyone { stream.broadcast() } else { stream.exchange(|_| 0) };
        let (sink, finished) = (got.clone(), done.clone());
        stream.sink(Pipeline, "Gather", move |(input, frontier)| {
            input.for_each(|_, data| sink.borrow_mut().append(data));
            finished.set(frontier.is_empty());
        });
        input
    });
    input.send((index, value));
    input.close();
    worker.step_while(|| !done.get());
    let mut all = std::mem::take(&mut *got.borrow_mut());
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, v)| v).collect()
}
