//! One replica on its own, as a node runs it: the same thread, engine driver, verifier pool and
//! application side as a replica of the in-process cluster, with its stores in a directory that
//! outlives the process, and its messages handed to an [`Outbox`] (a network) instead of the
//! other replicas' inboxes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread;
use std::time::Instant;

use agora_consensus::{Application, MempoolLimits, Protocol};
use agora_store::SnapshotPolicy;
use agora_types::{Certificate, NodeId};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::replica::{Input, Outbox, ReplicaEvent, ReplicaLive, Shared};
use crate::{
    ReplicaReport, ReplicaSettings, Restarts, RuntimeError, Wiring, open_dir, spawn_replica,
    spawn_verifiers,
};

/// Settings of a replica run on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOptions {
    /// The committee's size (a broadcast goes to every other member).
    pub members: usize,
    /// The mempool's bounds.
    pub mempool: MempoolLimits,
    /// Verify transaction signatures on arrival on a pool of verifier threads.
    pub verify_ahead: bool,
    /// Apply final blocks on a thread of their own.
    pub apply_thread: bool,
    /// When the block store snapshots the application, and how many it keeps.
    pub snapshots: SnapshotPolicy,
    /// Blocks the block store keeps below its tip once a snapshot lets older ones go (`None`:
    /// every block).
    pub retained_blocks: Option<u64>,
    /// What the blocks are applied to, recorded in a new block store.
    pub application: Option<Bytes>,
    /// Inputs (peer messages, submissions) its inbox holds at most.
    pub inbox_capacity: usize,
    /// Events waiting to be read at most; beyond, they are dropped and counted.
    pub events_capacity: usize,
    /// Told each applied block's height and the certificates that prove it final (the node's
    /// API serves them); called on the apply thread, so it must be quick.
    pub proofs: Option<ProofSink>,
    /// Told how long each store sync took (`journal` or `blocks`), on the thread that synced.
    pub syncs: Option<SyncSink>,
}

/// What a [`SyncSink`] calls: the store (`journal` or `blocks`) and how long its sync took.
pub type SyncCallback = dyn Fn(&'static str, std::time::Duration) + Send + Sync;

/// A callback told how long each store sync took.
#[derive(Clone)]
pub struct SyncSink(pub Arc<SyncCallback>);

impl std::fmt::Debug for SyncSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncSink")
    }
}

impl PartialEq for SyncSink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SyncSink {}

/// What a [`ProofSink`] calls: the block's height and its certificates.
pub type ProofCallback = dyn Fn(u64, &[Certificate]) + Send + Sync;

/// A callback told each applied block's height and its proof of finality.
#[derive(Clone)]
pub struct ProofSink(pub Arc<ProofCallback>);

impl std::fmt::Debug for ProofSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProofSink")
    }
}

impl PartialEq for ProofSink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ProofSink {}

impl ReplicaOptions {
    /// A member of a committee of `members`, with the runtime's defaults: default mempool,
    /// verification ahead and an apply thread, snapshots by [`SnapshotPolicy::default`], every
    /// block kept, an inbox of 65,536 and 65,536 events.
    pub fn new(members: usize) -> Self {
        Self {
            members,
            mempool: MempoolLimits::default(),
            verify_ahead: true,
            apply_thread: true,
            snapshots: SnapshotPolicy::default(),
            retained_blocks: None,
            application: None,
            inbox_capacity: 65_536,
            events_capacity: 65_536,
            proofs: None,
            syncs: None,
        }
    }
}

/// A replica running on its own threads until [`RunningReplica::stop`].
#[derive(Debug)]
pub struct RunningReplica {
    me: NodeId,
    inbox: Sender<Input>,
    events: Receiver<ReplicaEvent>,
    thread: thread::JoinHandle<ReplicaReport>,
    workers: Vec<thread::JoinHandle<()>>,
    replayed_blocks: u64,
    live: ReplicaLive,
}

impl RunningReplica {
    /// Its live figures (mempool, traffic by kind), readable while it runs.
    pub fn live(&self) -> ReplicaLive {
        self.live.clone()
    }

    /// An inbox for a replica to be started with [`RunningReplica::start`]: whoever feeds it
    /// (a network) can hold its sender before the replica exists.
    pub fn inbox_channel(options: &ReplicaOptions) -> (Sender<Input>, Receiver<Input>) {
        bounded::<Input>(options.inbox_capacity)
    }

    /// Starts replica `me` from the stores in `dir` (created if there are none): `engine`
    /// restored from its journal, `app` rebuilt from its block store, reading `inbox` (from
    /// [`RunningReplica::inbox_channel`]), its messages to `outbox`.
    pub fn start<P>(
        me: NodeId,
        mut engine: P,
        app: Box<dyn Application + Send>,
        dir: &Path,
        options: &ReplicaOptions,
        outbox: Box<dyn Outbox>,
        (inbox_tx, inbox): (Sender<Input>, Receiver<Input>),
    ) -> Result<Self, RuntimeError>
    where
        P: Protocol + Send + 'static,
        P::Timer: Send,
    {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Store {
            node: me,
            reason: format!("cannot make {}: {e}", dir.display()),
        })?;
        let (journal, ledger, replayed_blocks) = open_dir(
            dir,
            options.snapshots,
            options.retained_blocks,
            options.application.as_ref(),
            &mut engine,
            app,
            me,
        )
        .map_err(|reason| RuntimeError::Store { node: me, reason })?;
        let (events_tx, events) = bounded::<ReplicaEvent>(options.events_capacity);
        let (jobs, workers) = spawn_verifiers(options.verify_ahead);
        let settings = ReplicaSettings {
            verify_ahead: options.verify_ahead,
            apply_thread: options.apply_thread,
            mempool: options.mempool,
            members: options.members,
        };
        let shared = Arc::new(Shared { syncs: options.syncs.clone(), ..Shared::default() });
        let live = ReplicaLive(Arc::clone(&shared));
        let wiring = Wiring {
            me,
            engine,
            outbox,
            shared: Arc::clone(&shared),
            finalized: Arc::new(AtomicU64::new(0)),
            jobs: options.verify_ahead.then_some(jobs),
            inbox,
            stores: (journal, ledger),
            restarts: Restarts {
                dir: Some(dir.to_path_buf()),
                retained_blocks: options.retained_blocks,
                spares: Default::default(),
            },
            events: Some(events_tx),
            proofs: options.proofs.clone(),
        };
        let thread = spawn_replica(&settings, wiring, Instant::now());
        Ok(Self { me, inbox: inbox_tx, events, thread, workers, replayed_blocks, live })
    }

    /// Where peer messages and submissions go.
    pub fn inbox(&self) -> Sender<Input> {
        self.inbox.clone()
    }

    /// What the replica reports as it happens.
    pub fn events(&self) -> Receiver<ReplicaEvent> {
        self.events.clone()
    }

    /// Blocks replayed into the application when it started.
    pub fn replayed_blocks(&self) -> u64 {
        self.replayed_blocks
    }

    /// Whether its thread still runs (it stops by itself only if its stores fail).
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    /// Stops the replica: what it applied is stored, and its report returned.
    pub fn stop(self) -> Result<ReplicaReport, RuntimeError> {
        let _ = self.inbox.send(Input::Stop);
        let report = self.thread.join().map_err(|_| RuntimeError::ReplicaPanicked(self.me))?;
        for worker in self.workers {
            let _ = worker.join();
        }
        Ok(report)
    }
}
