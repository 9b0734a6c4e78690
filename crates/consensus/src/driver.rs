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
/// after it leaves, and before any commit emitted after it takes effect. Records are appended
/// as they come and synced once, just before the first send or commit that follows them, or
/// at the end of the pass (group commit: one sync per pass in the usual persist-then-send
/// handler, however many records it wrote).
///
/// A commit waits like a message because it is one to the world: the application applies the
/// block and clients hear it is final. An engine may count its own vote toward the quorum
/// that makes a block final; if that vote's record were not durable, a crash would leave the
/// replica having applied a block whose quorum never existed outside it (Twins seed 813151247:
/// a PBFT backup committed on its own unsent COMMIT, crashed in the sync, and the others
/// finalized another block at that height).
pub fn dispatch<M, T>(
    actions: impl IntoIterator<Item = Action<M, T>>,
    driver: &mut impl Driver<M, T>,
) {
    let mut unsynced = false;
    for action in actions {
        let effect = matches!(
            action,
            Action::Send { .. } | Action::Broadcast { .. } | Action::Commit { .. }
        );
        if effect && unsynced {
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

    /// Writes down what a driver is asked to do, in order.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Driver<&'static str, ()> for Log {
        fn send(&mut self, to: NodeId, message: &'static str) {
            self.0.push(format!("send {message} to {}", to.0));
        }
        fn broadcast(&mut self, message: &'static str) {
            self.0.push(format!("broadcast {message}"));
        }
        fn set_timer(&mut self, _: (), _: u64) {
            self.0.push("timer".into());
        }
        fn cancel_timer(&mut self, _: ()) {}
        fn commit(&mut self, block: Block, _: Vec<Certificate>) {
            self.0.push(format!("commit {}", block.height().0));
        }
        fn persist(&mut self, _: Bytes, _: Option<u64>) {
            self.0.push("persist".into());
        }
        fn sync(&mut self) {
            self.0.push("sync".into());
        }
    }

    #[test]
    fn records_are_durable_before_the_sends_and_commits_after_them_and_synced_once_per_run() {
        let block = |h: u64| {
            let batch = agora_types::Batch::new(Vec::new()).unwrap();
            Block::new(
                agora_crypto::Digest::ZERO,
                agora_types::Round(0),
                agora_types::Height(h),
                NodeId(0),
                0,
                batch,
            )
        };
        let persist = || Action::Persist { record: Bytes::from_static(b"r"), checkpoint: None };
        let mut log = Log::default();
        let actions: Vec<Action<&'static str, ()>> = vec![
            Action::Commit { block: block(1), proof: Vec::new() },
            persist(),
            persist(),
            Action::SetTimer { timer: (), after_ns: 1 },
            Action::Broadcast { message: "commit-vote" },
            Action::Send { to: NodeId(2), message: "reply" },
            persist(),
            // A commit that may rest on the vote just persisted waits for its sync, as a
            // message would.
            Action::Commit { block: block(2), proof: Vec::new() },
            persist(),
        ];
        dispatch(actions, &mut log);
        let expected = [
            "commit 1",
            "persist",
            "persist",
            "timer",
            "sync",
            "broadcast commit-vote",
            "send reply to 2",
            "persist",
            "sync",
            "commit 2",
            "persist",
            "sync",
        ];
        assert_eq!(log.0, expected);
    }

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
