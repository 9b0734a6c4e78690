//! The node's Prometheus metrics, served as text at `GET /metrics`.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `agora_finalized_height` | gauge | the height of the last block the market applied |
//! | `agora_blocks_finalized_total` | counter | blocks applied since the node started |
//! | `agora_transactions_finalized_total` | counter | transactions in them (executed or refused) |
//! | `agora_api_finalized_total` | counter | transactions submitted through this API that became final |
//! | `agora_finality_seconds` | histogram | from `POST /v1/orders` to the block that finalized it |
//! | `agora_api_pending` | gauge | transactions submitted here, not final yet |
//! | `agora_peers_connected` | gauge | peers linked now |
//! | `agora_mempool_pending{lane}` | gauge | transactions pending in the mempool (`lane="all"`: the node's mempool has one) |
//! | `agora_net_messages_total{direction}` | counter | consensus messages sent (`out`) and received (`in`) |
//! | `agora_net_bytes_total{direction}` | counter | their bytes |
//! | `agora_consensus_messages_total{kind,direction}` | counter | consensus messages by the engine's kind (`vote`, `propose`, `pre-prepare`, …) |
//! | `agora_consensus_bytes_total{kind,direction}` | counter | their bytes |
//! | `agora_store_sync_seconds{store}` | histogram | how long each durable sync took: `journal` (the engine's records, before its messages leave) or `blocks` (the block store's commits) |
//! | `agora_drops_total{reason}` | counter | what the network dropped or refused, by reason |
//! | `agora_api_requests_total{route,status}` | counter | API requests by route template and status |
//! | `agora_api_refused_total{reason}` | counter | orders the API refused before the mempool, by reason |
//! | `agora_stream_subscribers` | gauge | WebSocket connections open |
//!
//! The network's counts are read from the node when `/metrics` is scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::NodeInfo;

/// A request's route template and status.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route as declared, for example `/v1/orders/{tx_id}`.
    pub route: String,
    /// The HTTP status code.
    pub status: u16,
}

/// A reason label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The reason.
    pub reason: String,
}

/// A message kind and a direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    /// The engine's kind of message.
    pub kind: String,
    /// `in` or `out`.
    pub direction: &'static str,
}

/// A store label: `journal` or `blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StoreLabels {
    /// Which store synced.
    pub store: &'static str,
}

/// A lane label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LaneLabels {
    /// The lane.
    pub lane: &'static str,
}

/// The store-sync histogram's buckets: 50 µs to about 0.8 s, doubling.
fn sync_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 15))
}

/// A direction label: `in` or `out`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `in` or `out`.
    pub direction: &'static str,
}

/// Every metric the node exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `agora_finalized_height`.
    pub height: Gauge,
    /// `agora_blocks_finalized_total`.
    pub blocks: Counter,
    /// `agora_transactions_finalized_total`.
    pub transactions: Counter,
    /// `agora_api_finalized_total`.
    pub finalized_here: Counter,
    /// `agora_finality_seconds`.
    pub finality: Histogram,
    /// `agora_api_pending`.
    pub pending: Gauge,
    /// `agora_peers_connected`.
    pub peers: Gauge,
    /// `agora_net_messages_total`.
    pub messages: Family<DirectionLabels, Counter>,
    /// `agora_net_bytes_total`.
    pub bytes: Family<DirectionLabels, Counter>,
    /// `agora_drops_total`.
    pub drops: Family<ReasonLabels, Counter>,
    /// `agora_api_requests_total`.
    pub requests: Family<RouteLabels, Counter>,
    /// `agora_api_refused_total`.
    pub refused: Family<ReasonLabels, Counter>,
    /// `agora_stream_subscribers`.
    pub subscribers: Gauge,
    /// `agora_mempool_pending`.
    pub mempool: Family<LaneLabels, Gauge>,
    /// `agora_consensus_messages_total`.
    pub kind_messages: Family<KindLabels, Counter>,
    /// `agora_consensus_bytes_total`.
    pub kind_bytes: Family<KindLabels, Counter>,
    /// `agora_store_sync_seconds`.
    pub store_sync: Family<StoreLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let height = Gauge::default();
        let blocks = Counter::default();
        let transactions = Counter::default();
        let finalized_here = Counter::default();
        // 5 ms to about 41 s, doubling.
        let finality = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.005, 2.0, 14,
        ));
        let pending = Gauge::default();
        let peers = Gauge::default();
        let messages = Family::<DirectionLabels, Counter>::default();
        let bytes = Family::<DirectionLabels, Counter>::default();
        let drops = Family::<ReasonLabels, Counter>::default();
        let requests = Family::<RouteLabels, Counter>::default();
        let refused = Family::<ReasonLabels, Counter>::default();
        let subscribers = Gauge::default();
        let mempool = Family::<LaneLabels, Gauge>::default();
        let kind_messages = Family::<KindLabels, Counter>::default();
        let kind_bytes = Family::<KindLabels, Counter>::default();
        let store_sync = Family::<StoreLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            sync_histogram,
        );
        let r = &mut registry;
        r.register("agora_mempool_pending", "Transactions pending in the mempool", mempool.clone());
        r.register(
            "agora_consensus_messages",
            "Consensus messages by kind and direction",
            kind_messages.clone(),
        );
        r.register(
            "agora_consensus_bytes",
            "Consensus message bytes by kind and direction",
            kind_bytes.clone(),
        );
        r.register(
            "agora_store_sync_seconds",
            "How long each durable sync took",
            store_sync.clone(),
        );
        r.register("agora_finalized_height", "Height of the last block applied", height.clone());
        r.register("agora_blocks_finalized", "Blocks applied since start", blocks.clone());
        r.register(
            "agora_transactions_finalized",
            "Transactions in the blocks applied since start",
            transactions.clone(),
        );
        r.register(
            "agora_api_finalized",
            "Transactions submitted through this API that became final",
            finalized_here.clone(),
        );
        r.register(
            "agora_finality_seconds",
            "From POST /v1/orders to the block that finalized it",
            finality.clone(),
        );
        r.register("agora_api_pending", "Submitted here, not final yet", pending.clone());
        r.register("agora_peers_connected", "Peers linked now", peers.clone());
        r.register("agora_net_messages", "Consensus messages by direction", messages.clone());
        r.register("agora_net_bytes", "Consensus message bytes by direction", bytes.clone());
        r.register("agora_drops", "Network drops and refusals by reason", drops.clone());
        r.register("agora_api_requests", "API requests by route and status", requests.clone());
        r.register("agora_api_refused", "Orders refused before the mempool", refused.clone());
        r.register("agora_stream_subscribers", "WebSocket connections open", subscribers.clone());
        Self {
            registry,
            height,
            blocks,
            transactions,
            finalized_here,
            finality,
            pending,
            peers,
            messages,
            bytes,
            drops,
            requests,
            refused,
            subscribers,
            mempool,
            kind_messages,
            kind_bytes,
            store_sync,
        }
    }

    /// Notes that a sync of `store` (`journal` or `blocks`) took `took`.
    pub fn observe_sync(&self, store: &'static str, took: std::time::Duration) {
        self.store_sync.get_or_create(&StoreLabels { store }).observe(took.as_secs_f64());
    }

    /// The text exposition, after reading the node's network counts.
    pub fn render(&self, node: &NodeInfo, pending: usize) -> String {
        self.peers.set(node.connected.len() as i64);
        self.pending.set(pending as i64);
        let set = |counter: &Counter, value: u64| {
            let now = counter.get();
            if value > now {
                counter.inc_by(value - now);
            }
        };
        set(
            &self.messages.get_or_create(&DirectionLabels { direction: "out" }),
            node.messages_sent,
        );
        set(
            &self.messages.get_or_create(&DirectionLabels { direction: "in" }),
            node.messages_received,
        );
        set(&self.bytes.get_or_create(&DirectionLabels { direction: "out" }), node.bytes_sent);
        set(&self.bytes.get_or_create(&DirectionLabels { direction: "in" }), node.bytes_received);
        for (reason, count) in &node.dropped {
            set(&self.drops.get_or_create(&ReasonLabels { reason: reason.clone() }), *count);
        }
        self.mempool.get_or_create(&LaneLabels { lane: "all" }).set(node.mempool_pending as i64);
        for (kind, [sent, sent_bytes, received, received_bytes]) in &node.traffic {
            let label = |direction| KindLabels { kind: kind.clone(), direction };
            set(&self.kind_messages.get_or_create(&label("out")), *sent);
            set(&self.kind_bytes.get_or_create(&label("out")), *sent_bytes);
            set(&self.kind_messages.get_or_create(&label("in")), *received);
            set(&self.kind_bytes.get_or_create(&label("in")), *received_bytes);
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "metrics did not encode");
        }
        text
    }
}
