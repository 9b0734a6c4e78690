//! What every driver does with an engine's actions, written once: the simulator and the
//! real-time runtime differ in how they send, wait and apply, not in what an action means.

use std::hash::Hash;

use agora_types::bytes::Bytes;
use agora_types::{Block, Certificate, NodeId};
use rustc_hash::FxHashMap;

use crate::Action;

/// How a driver carries out each kind of [`Action`]. [`dispatch`] is the one place that maps
/// actions onto these, so a new action kind is handled by every driver or by none.
pub trait Driver<M, T> {
    /// Sends `message` to `to`.
    fn send(&mut self, to: NodeId, message: M);
    /// Sends `message` to every other member.
    fn broadcast(&mut self, message: M);
    /// Arms `timer` to fire after `after_ns`, moving it if it is armed already (see
    /// [`TimerTable`]).
    fn set_timer(&mut self, timer: T, after_ns: u64);
    /// Disarms `timer`, if it is armed.
    fn cancel_timer(&mut self, timer: T);
    /// `block` is final, as `proof` shows: apply it, and store both.
    fn commit(&mut self, block: Block, proof: Vec<Certificate>);
    /// Appends `record` to the node's journal, not yet durable; `checkpoint` as in
    /// [`Action::Persist`].
    fn persist(&mut self, record: Bytes, checkpoint: Option<u64>);
    /// Makes every record appended so far durable.
    fn sync(&mut self);
}

/// Carries out `actions` in the order the engine emitted them, with the one durability rule
/// every driver keeps: a record the engine persisted is durable before any message emitted
/// after it leaves. Records are appended as they come and synced once, just before the first
/// send that follows them, or at the end of the pass (group commit: one sync per pass in the
/// usual persist-then-send handler, however many records it wrote).
pub fn dispatch<M, T>(
    actions: impl IntoIterator<Item = Action<M, T>>,
    driver: &mut impl Driver<M, T>,
) {
    let mut unsynced = false;
    for action in actions {
        let sends = matches!(action, Action::Send { .. } | Action::Broadcast { .. });
        if sends && unsynced {
            driver.sync();
            unsynced = false;
        }
        match action {
            Action::Send { to, message } => driver.send(to, message),
            Action::Broadcast { message } => driver.broadcast(message),
            Action::SetTimer { timer, after_ns } => driver.set_timer(timer, after_ns),
            Action::CancelTimer { timer } => driver.cancel_timer(timer),
            Action::Commit { block, proof } => driver.commit(block, proof),
            Action::Persist { record, checkpoint } => {
                driver.persist(record, checkpoint);
                unsynced = true;
            }
        }
    }
    if unsynced {
        driver.sync();
    }
}

/// Which arming of each timer is current: an engine that sets an armed timer moves it, and one
/// that cancels it forgets it, so a driver that scheduled the earlier arming must ignore it when
/// it comes due. The driver names each arming by an id of its own (an event number, a deadline
/// sequence number) and asks here whether the one that came due is still the current one.
///
/// An id is whatever the driver keys its schedule by: the simulator's event number, or the
/// runtime's `(deadline, sequence number)`, so that a replaced arming can be taken out of the
/// schedule at once.
#[derive(Debug, Clone)]
pub struct TimerTable<T, I = u64> {
    armed: FxHashMap<T, I>,
}

impl<T, I> Default for TimerTable<T, I> {
    fn default() -> Self {
        Self { armed: FxHashMap::default() }
    }
}

impl<T: Eq + Hash, I: Copy + PartialEq> TimerTable<T, I> {
    /// Records that `timer` is now armed as `id`; returns the arming it replaces, if any.
    pub fn arm(&mut self, timer: T, id: I) -> Option<I> {
        self.armed.insert(timer, id)
    }

    /// Disarms `timer`; returns the arming it cancels, if any.
    pub fn cancel(&mut self, timer: &T) -> Option<I> {
        self.armed.remove(timer)
    }

    /// Whether arming `id` of `timer` is the current one.
    pub fn is_current(&self, timer: &T, id: I) -> bool {
        self.armed.get(timer) == Some(&id)
    }

    /// When arming `id` of `timer` comes due: true, and the timer is disarmed, if it is the
    /// current arming (the engine's handler runs); false if it was moved or cancelled since.
    pub fn fire(&mut self, timer: &T, id: I) -> bool {
        let current = self.is_current(timer, id);
        if current {
            self.armed.remove(timer);
        }
        current
    }

    /// Disarms every timer (a crashed node forgets its timers).
    pub fn clear(&mut self) {
        self.armed.clear();
    }

    /// Timers armed.
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_or_cancelled_arming_does_not_fire() {
        let mut t = TimerTable::default();
        assert_eq!(t.arm("view", 1), None);
        assert_eq!(t.arm("view", 2), Some(1));
        assert!(!t.fire(&"view", 1), "moved: the first arming is stale");
        assert!(t.fire(&"view", 2));
        assert!(!t.fire(&"view", 2), "a timer fires once");
        t.arm("epoch", 3);
        assert_eq!(t.cancel(&"epoch"), Some(3));
        assert!(!t.fire(&"epoch", 3));
        assert!(t.is_empty());
    }
}
