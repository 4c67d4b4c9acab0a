//! Brings one value from every worker of every process to worker 0, through a dataflow (so
//! across processes too): how `replay` collects what the workers produced.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Input;
use timely::worker::Worker;
use timely::ExchangeData;

/// Every worker calls this with its value; worker 0 gets them all (in worker order), the
/// others an empty vector.
pub fn gather<T: ExchangeData + Clone>(worker: &mut Worker, value: T) -> Vec<T> {
    let got = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(Cell::new(false));
    let index = worker.index();
    let mut input = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<(usize, T)>();
        let (sink, finished) = (got.clone(), done.clone());
        stream.sink(Exchange::new(|_: &(usize, T)| 0), "Gather", move |(input, frontier)| {
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
