//! The virtual clock: one binary-heap event queue. Events at the same
//! instant run in the order they were scheduled (a sequence number breaks
//! ties), so a run is a pure function of its seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// Virtual time since the start of the run, in nanoseconds.
pub type Nanos = u64;

pub fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub fn millis(n: Nanos) -> u64 {
    n / 1_000_000
}

/// Events ordered by (time, scheduling order).
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(Nanos, u64, Slot<E>)>>,
    seq: u64,
}

/// Wraps an event so the heap never compares events themselves.
#[derive(Debug)]
struct Slot<E>(E);

impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn push(&mut self, at: Nanos, event: E) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, Slot(event))));
    }

    /// The earliest event, if it is due at or before `until`.
    pub fn pop_until(&mut self, until: Nanos) -> Option<(Nanos, E)> {
        if self
            .heap
            .peek()
            .is_none_or(|Reverse((at, _, _))| *at > until)
        {
            return None;
        }
        self.heap.pop().map(|Reverse((at, _, Slot(e)))| (at, e))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_ties_in_scheduling_order() {
        let mut q = EventQueue::default();
        q.push(5, "b");
        q.push(1, "a");
        q.push(5, "c");
        q.push(9, "d");
        let mut out = Vec::new();
        while let Some((_, e)) = q.pop_until(6) {
            out.push(e);
        }
        assert_eq!(out, ["a", "b", "c"]);
        assert_eq!(q.len(), 1);
    }
}
