//! What the API tests share: four nodes in one process, each with its API on loopback, over a
//! market of two funded traders; and bounded waits on the stream and on finality.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agora_api::{Api, ApiLimits, ApiServer, MarketView, Metrics, ViewLimits};
use agora_client::{Client, ClientError, Stream};
use agora_crypto::{PublicKeyBytes, SecretKey};
use agora_engines::EngineConfig;
use agora_market::{AccountRole, ExecutionOrder, GenesisAccount, MarketGenesis, StoredApplication};
use agora_net::{Listener, NetLimits};
use agora_node::{ApiLink, Node, NodeConfig, market_genesis, proof_sink, sync_sink};
use agora_orderbook::{AccountId, MarketSpec};
use agora_runtime::ReplicaOptions;
use agora_simplex::SimplexConfig;
use agora_types::{Committee, NodeId, Transaction};
use serde_json::Value;

pub const N: usize = 4;
/// Every wait is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);
pub const MARKET: &str = "ETH-USD";

pub fn trader(seed: u64) -> SecretKey {
    SecretKey::from_seed(900, seed)
}

fn genesis() -> MarketGenesis {
    let account = |seed: u64, deposits: Vec<(&str, u64)>| GenesisAccount {
        key: PublicKeyBytes::from(trader(seed).public_key()),
        account: AccountId(seed),
        deposits: deposits.into_iter().map(|(a, q)| (a.to_owned(), q)).collect(),
        role: AccountRole::Trader,
    };
    MarketGenesis {
        markets: vec![MarketSpec::new(MARKET, "ETH", "USD")],
        accounts: vec![account(1, vec![("USD", 1_000_000)]), account(2, vec![("ETH", 1_000)])],
    }
}

/// Four running nodes with their APIs.
pub struct Testnet {
    pub nodes: Vec<Node>,
    pub apis: Vec<ApiServer>,
}

impl Testnet {
    pub fn start(root: &Path) -> Self {
        let (committee, keys) = Committee::deterministic(11, N).unwrap();
        let listeners: Vec<Listener> =
            (0..N).map(|_| Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap()).collect();
        let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut simplex = SimplexConfig::new(20_000_000);
        simplex.empty_block_after_ns = simplex.delta_ns;
        let application =
            StoredApplication::Market { genesis: genesis(), order: ExecutionOrder::Canonical };
        let (mut nodes, mut apis) = (Vec::new(), Vec::new());
        for (i, listener) in listeners.into_iter().enumerate() {
            let config = NodeConfig {
                me: NodeId(i as u16),
                key: keys[i].clone(),
                committee: committee.clone(),
                peers: (0..N).filter(|j| *j != i).map(|j| (NodeId(j as u16), addrs[j])).collect(),
                store: root.join(format!("node-{i}")),
                engine: EngineConfig::Simplex(simplex),
                application: application.clone(),
                replica: ReplicaOptions::new(N),
                net: NetLimits { backoff_min: Duration::from_millis(20), ..NetLimits::default() },
            };
            let metrics = Arc::new(Metrics::new());
            let view = MarketView::new(
                &market_genesis(&config.application),
                ViewLimits::default(),
                Arc::clone(&metrics),
            );
            let mut config = config;
            config.replica.proofs = Some(proof_sink(&view));
            config.replica.syncs = Some(sync_sink(&metrics));
            let node = Node::start_observed(config, listener, Some(view.observer())).unwrap();
            let link = ApiLink::new(node.handle(), "simplex", N);
            let api = Api { view, node: Arc::new(link), metrics, limits: ApiLimits::default() };
            let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            apis.push(ApiServer::start(http, api).unwrap());
            nodes.push(node);
        }
        Self { nodes, apis }
    }

    pub fn clients(&self) -> Vec<Client> {
        self.apis.iter().map(|a| Client::new(&format!("http://{}", a.addr())).unwrap()).collect()
    }

    pub fn stop(self) {
        for api in self.apis {
            api.stop();
        }
        for node in self.nodes {
            let report = node.stop().unwrap();
            assert!(report.store_error.is_none() && report.journal_error.is_none(), "{report:?}");
        }
    }
}

/// Waits for the next message on `stream` of `channel`, within the bound.
pub async fn next_on(stream: &mut Stream, channel: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let message = stream.next().await.unwrap().expect("the stream closed");
            if message["channel"] == channel {
                return message;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("nothing on {channel} within {WAIT:?}"))
}

/// Polls `client` until `tx` is final there.
pub async fn wait_final(client: &Client, tx: &Transaction) -> agora_client::OrderStatus {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.order(&tx.id()).await {
                Ok(status) if status.status == "final" => return status,
                Ok(_) => {}
                Err(ClientError::Api { status: 404, .. }) => {}
                Err(error) => panic!("{error}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("final within the bound")
}
