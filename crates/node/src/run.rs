//! `agora node --config FILE`: one node as a process, until SIGINT or SIGTERM.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use agora_net::Listener;

use std::sync::Arc;

use agora_api::{Api, ApiLimits, ApiServer, MarketView, Metrics, ViewLimits};
use agora_market::{MarketGenesis, StoredApplication};

use crate::client::ClientService;
use crate::{ApiLink, Node, NodeFile};

/// How often a running node logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Runs the node `config` describes until SIGINT or SIGTERM, then stops it cleanly: the links
/// closed, the replica's stores synced. An error is one line naming what failed.
pub fn run_node(config: &Path) -> Result<(), String> {
    let file = NodeFile::read(config).map_err(|e| e.to_string())?;
    let (node_config, client_addr) = file.load(config).map_err(|e| e.to_string())?;
    let listen = file.net.listen;
    let peers = Listener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let clients = TcpListener::bind(client_addr)
        .map_err(|e| format!("cannot listen for clients on {client_addr}: {e}"))?;
    let (me, protocol) = (node_config.me, node_config.engine.protocol());
    let members = node_config.committee.n();
    let store = node_config.store.clone();
    // The API's listener is bound before the node starts, so that a busy port stops nothing.
    let api_listener = match &file.api {
        Some(section) => Some(
            TcpListener::bind(section.listen)
                .map_err(|e| format!("cannot listen for the API on {}: {e}", section.listen))?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let view = MarketView::new(
        &market_genesis(&node_config.application),
        ViewLimits::default(),
        Arc::clone(&metrics),
    );
    let observer = api_listener.as_ref().map(|_| view.observer());
    let mut node_config = node_config;
    if api_listener.is_some() {
        node_config.replica.proofs = Some(proof_sink(&view));
        node_config.replica.syncs = Some(sync_sink(&metrics));
    }
    let node = Node::start_observed(node_config, peers, observer).map_err(|e| e.to_string())?;
    tracing::info!(
        node = me.0,
        protocol = protocol.name(),
        %listen,
        clients = %client_addr,
        store = %store.display(),
        replayed_blocks = node.replayed_blocks(),
        "node started"
    );
    let service = ClientService::start(clients, node.handle()).map_err(|e| e.to_string())?;
    let api = match api_listener {
        Some(listener) => {
            let link = ApiLink::new(node.handle(), protocol.name(), members);
            let api = Api { view, node: Arc::new(link), metrics, limits: ApiLimits::default() };
            let server = ApiServer::start(listener, api).map_err(|e| e.to_string())?;
            tracing::info!(node = me.0, api = %server.addr(), "API serving");
            Some(server)
        }
        None => None,
    };
    let mut last_log = Instant::now();
    let reason = wait_for_shutdown(|| {
        if last_log.elapsed() >= PROGRESS_EVERY {
            last_log = Instant::now();
            let stats = node.net_stats();
            tracing::info!(
                node = me.0,
                peers = stats.connected.len(),
                sent = stats.messages_sent,
                received = stats.messages_received,
                dropped = stats.dropped.values().sum::<u64>(),
                "progress"
            );
        }
        !node.is_running()
    })
    .map_err(|e| format!("cannot wait for signals: {e}"))?;
    let stats = node.net_stats();
    tracing::info!(
        node = me.0,
        reason,
        sent = stats.messages_sent,
        received = stats.messages_received,
        dropped = ?stats.dropped,
        "stopping"
    );
    if let Some(api) = api {
        api.stop();
    }
    service.stop();
    let report = node.stop().map_err(|e| e.to_string())?;
    if let Some(error) = report.store_error.or(report.journal_error) {
        return Err(format!("node {}: {error}", me.0));
    }
    tracing::info!(node = me.0, height = report.height, "stopped");
    Ok(())
}

/// Blocks until SIGINT or SIGTERM arrives, or `stopped` (polled every 100 ms) says the node
/// stopped by itself; returns which.
pub fn wait_for_shutdown(mut stopped: impl FnMut() -> bool) -> std::io::Result<&'static str> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut interrupt = signal(SignalKind::interrupt())?;
            let mut terminate = signal(SignalKind::terminate())?;
            loop {
                tokio::select! {
                    _ = interrupt.recv() => return Ok("SIGINT"),
                    _ = terminate.recv() => return Ok("SIGTERM"),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if stopped() {
                            return Ok("the replica stopped");
                        }
                    }
                }
            }
        }
        #[cfg(not(unix))]
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok("interrupt"),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if stopped() {
                        return Ok("the replica stopped");
                    }
                }
            }
        }
    })
}

/// The market genesis the API's view starts from: none (no markets, no accounts) when the
/// application is not the market.
pub fn market_genesis(application: &StoredApplication) -> MarketGenesis {
    match application {
        StoredApplication::Market { genesis, .. } => genesis.clone(),
        StoredApplication::TxLog { .. } => {
            MarketGenesis { markets: Vec::new(), accounts: Vec::new() }
        }
    }
}

/// The replica's proofs of finality into the API's view.
pub fn proof_sink(view: &MarketView) -> agora_runtime::ProofSink {
    let view = view.clone();
    agora_runtime::ProofSink(Arc::new(move |height, proof| view.note_proof(height, proof)))
}

/// The replica's store syncs into the API's metrics.
pub fn sync_sink(metrics: &Arc<Metrics>) -> agora_runtime::SyncSink {
    let metrics = Arc::clone(metrics);
    agora_runtime::SyncSink(Arc::new(move |store, took| metrics.observe_sync(store, took)))
}
