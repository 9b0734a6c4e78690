//! `agora replay`: a replica's stored log, replayed from genesis or from a snapshot, every state
//! digest recomputed and compared with the stored one.
//!
//! A replica's store directory holds `blocks.redb`, its [`RedbBlockStore`]: the finalized
//! blocks, the state digest after each, snapshots, and a description of the application the
//! blocks were applied to ([`StoredApplication`]), written when the store was first used.
//! Replay builds that application, starts from the newest snapshot at or below `--from` (from
//! genesis when `--from` is 0 or no snapshot is that old), applies every block after it and
//! stops at the first height whose digest differs from the stored one, naming it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use agora_consensus::{Application, TxLog};
use agora_crypto::DirectCheck;
pub use agora_market::StoredApplication;
use agora_market::{MarketApp, MarketObserver};
use agora_orderbook::Event;
use agora_store::{
    BlockStore, Height, LedgerError, MemBlockStore, RedbBlockStore, Snapshot, SnapshotPolicy,
    StoreError, replay_from,
};
use agora_types::NodeId;
use serde::Serialize;

pub use agora_store::BLOCKS_FILE;

/// What `agora replay` is asked.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ReplayOptions {
    /// A replica's store directory (the one that holds `blocks.redb`).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Start from the newest snapshot at or below this height (0: from genesis).
    #[arg(long, value_name = "HEIGHT", default_value_t = 0)]
    pub from: u64,
    /// Print every trade as a JSON line (with the height that made it) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// What the blocks were applied to: `market` or `txlog`.
    pub application: &'static str,
    /// The store file.
    pub store: PathBuf,
    /// The snapshot it started from, if any.
    pub snapshot: Option<u64>,
    /// Blocks replayed, each digest equal to the stored one.
    pub blocks: u64,
    /// Transactions executed in them.
    pub executed: u64,
    /// Trades they made (a market).
    pub trades: u64,
    /// The height reached: the store's tip.
    pub height: u64,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// There is no store where it was asked for.
    #[error("{}: no block store here (expected {BLOCKS_FILE})", path.display())]
    NoStore {
        /// The directory.
        path: PathBuf,
    },
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store does not say what its blocks were applied to.
    #[error("{}: {reason}", path.display())]
    Application {
        /// The store file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The replay differs from the store, or cannot go on.
    #[error("{}: {source}", path.display())]
    Ledger {
        /// The store file.
        path: PathBuf,
        /// What happened, naming the height.
        source: LedgerError,
    },
    /// Standard output failed.
    #[error("writing the trades: {0}")]
    Output(#[from] std::io::Error),
}

impl ReplayError {
    /// The first height whose stored digest the replay did not reproduce, if that is the
    /// failure.
    pub fn diverged_at(&self) -> Option<Height> {
        match self {
            Self::Ledger { source: LedgerError::Diverged { height, .. }, .. } => Some(*height),
            _ => None,
        }
    }
}

/// The trade events of the market being replayed, taken block by block.
#[derive(Clone, Default)]
struct Trades(Arc<Mutex<Vec<Event>>>);

impl MarketObserver for Trades {
    fn events(&mut self, events: &[Event]) {
        let trades = events.iter().filter(|e| matches!(e, Event::Trade { .. })).cloned();
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend(trades);
    }
}

/// One line of `--json`: a trade and the height whose execution made it.
#[derive(Serialize)]
struct TradeLine<'a> {
    height: u64,
    #[serde(flatten)]
    event: &'a Event,
}

/// One trade as text: `height 12  ETH-USD  5 lots at 2000  taker 7 buys from maker 3`.
fn trade_text(height: u64, event: &Event) -> Option<String> {
    let Event::Trade { market, maker_account, taker_account, taker_side, price, qty, .. } = event
    else {
        return None;
    };
    let verb = match taker_side {
        agora_orderbook::Side::Buy => "buys from",
        agora_orderbook::Side::Sell => "sells to",
    };
    Some(format!(
        "height {height}  {market}  {qty} lots at {price}  taker {} {verb} maker {}",
        taker_account.0, maker_account.0
    ))
}

/// Replays the store `options` names, writing every trade to `out`: a JSON line each with
/// `options.json`, a line of text each otherwise.
pub fn replay(options: &ReplayOptions, out: &mut dyn Write) -> Result<ReplaySummary, ReplayError> {
    let path = options.store.join(BLOCKS_FILE);
    if !path.is_file() {
        return Err(ReplayError::NoStore { path: options.store.clone() });
    }
    let store = RedbBlockStore::open(&path, SnapshotPolicy::default())?;
    let missing = || ReplayError::Application {
        path: path.clone(),
        reason: "the store does not record its application (not written by agora?)",
    };
    let description = store.application()?.ok_or_else(missing)?;
    let application = StoredApplication::decode(&description).ok_or(ReplayError::Application {
        path: path.clone(),
        reason: "the store's application description does not decode",
    })?;
    let kind = match application {
        StoredApplication::TxLog { .. } => "txlog",
        StoredApplication::Market { .. } => "market",
    };
    let trades = Trades::default();
    let restore = {
        let trades = trades.clone();
        move |snapshot: Option<&Snapshot>| build(&application, snapshot, trades)
    };
    let (mut count, mut written) = (0u64, Ok(()));
    let outcome = replay_from(&store, Height(options.from), restore, &mut DirectCheck, |b, _| {
        let taken = std::mem::take(&mut *trades.0.lock().unwrap_or_else(PoisonError::into_inner));
        count += taken.len() as u64;
        if written.is_ok() {
            let height = b.height().0;
            written = taken.iter().try_for_each(|event| {
                if options.json {
                    serde_json::to_writer(&mut *out, &TradeLine { height, event })
                        .map_err(std::io::Error::from)?;
                    writeln!(out)
                } else {
                    trade_text(height, event).map_or(Ok(()), |line| writeln!(out, "{line}"))
                }
            });
        }
    });
    written?;
    let (_, replayed) =
        outcome.map_err(|source| ReplayError::Ledger { path: path.clone(), source })?;
    Ok(ReplaySummary {
        application: kind,
        store: path,
        snapshot: replayed.snapshot.map(|h| h.0),
        blocks: replayed.blocks,
        executed: replayed.executed,
        trades: count,
        height: replayed.height.0,
    })
}

/// The application `description` names, at genesis or from `snapshot`, its trades observed.
fn build(
    description: &StoredApplication,
    snapshot: Option<&Snapshot>,
    trades: Trades,
) -> Result<Box<dyn Application>, String> {
    Ok(match (description, snapshot) {
        (StoredApplication::TxLog { verify_signatures }, None) => {
            Box::new(TxLog::new(*verify_signatures))
        }
        (StoredApplication::TxLog { .. }, Some(s)) => Box::new(
            TxLog::from_snapshot(&s.bytes, s.state_digest).ok_or("not a snapshot of the log")?,
        ),
        (StoredApplication::Market { genesis, order }, None) => {
            Box::new(MarketApp::new(genesis).with_order(*order).with_observer(Box::new(trades)))
        }
        (StoredApplication::Market { genesis, .. }, Some(s)) => Box::new(
            MarketApp::from_snapshot(genesis, &s.bytes, s.state_digest)
                .map_err(|error| error.to_string())?
                .with_observer(Box::new(trades)),
        ),
    })
}

/// Checks, before a run, that its stores can go to `dir`: the directory can be made, and
/// none of the `nodes` directories in it holds a store already.
pub fn check_store_dir(dir: &Path, nodes: usize) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.into(), source })?;
    for node in 0..nodes {
        let path = dir.join(format!("node-{node}")).join(BLOCKS_FILE);
        if path.exists() {
            return Err(already_there(path));
        }
    }
    Ok(())
}

fn already_there(path: PathBuf) -> StoreError {
    let source = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already holds a store");
    StoreError::Io { path, source }
}

/// Writes each `(node, store)` to `dir/node-<i>/blocks.redb` in the on-disk format, with
/// `application` recorded, so that [`replay`] reads it. A directory that already holds a store
/// is refused: a run never overwrites another's.
pub fn write_stores(
    dir: &Path,
    stores: &[(NodeId, MemBlockStore)],
    application: &StoredApplication,
) -> Result<(), StoreError> {
    /// Blocks copied per transaction.
    const COPY_BLOCKS: usize = 1_024;
    for (node, memory) in stores {
        let node_dir = dir.join(format!("node-{}", node.0));
        let io = |source| StoreError::Io { path: node_dir.clone(), source };
        std::fs::create_dir_all(&node_dir).map_err(io)?;
        let path = node_dir.join(BLOCKS_FILE);
        if path.exists() {
            return Err(already_there(path));
        }
        let mut redb = RedbBlockStore::open(&path, memory.policy())?;
        redb.set_application(&application.encode())?;
        let mut from = memory.base();
        loop {
            let blocks = memory.blocks(from, COPY_BLOCKS)?;
            let Some(last) = blocks.last() else { break };
            from = Height(last.height().0 + 1);
            if redb.tip() == Height(0) && blocks[0].height() > Height(1) {
                // A pruned store starts above genesis: so does its copy.
                return Err(StoreError::OutOfOrder {
                    expected: Height(1),
                    found: blocks[0].height(),
                });
            }
            redb.append(&blocks)?;
        }
        let mut snapshots = Vec::new();
        let mut below = Height(u64::MAX);
        while let Some(snapshot) = memory.snapshot_at_most(below)? {
            below = Height(snapshot.height.0.saturating_sub(1));
            snapshots.push(snapshot);
            if below == Height(0) {
                break;
            }
        }
        for snapshot in snapshots.iter().rev() {
            redb.put_snapshot(snapshot)?;
        }
    }
    Ok(())
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "replayed {} ({})", self.store.display(), self.application)?;
        match self.snapshot {
            Some(height) => writeln!(f, "  from       the snapshot at height {height}")?,
            None => writeln!(f, "  from       genesis")?,
        }
        writeln!(
            f,
            "  blocks     {}, every state digest equal to the stored one, to height {}",
            self.blocks, self.height
        )?;
        writeln!(f, "  executed   {} transactions, {} trades", self.executed, self.trades)
    }
}
