//! The API over a market without any consensus around it: a market applies one block of two
//! crossing orders, its observer keeps the API's view, and the API serves the book over HTTP.
//!
//! Run it: `cargo run -p agora-api --example serve_a_market`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use agora_api::{Api, ApiLimits, ApiServer, MarketView, Metrics, NodeInfo, NodeLink, ViewLimits};
use agora_consensus::Application;
use agora_crypto::{Digest, DirectCheck, PublicKeyBytes, SecretKey};
use agora_market::{AccountRole, GenesisAccount, MarketApp, MarketGenesis, OrderAction};
use agora_orderbook::{AccountId, MarketSpec, NewOrder, Side};
use agora_types::{Batch, Block, Height, NodeId, Round, Transaction};

/// A node that only collects what it is given.
#[derive(Default)]
struct Collect(Mutex<Vec<Transaction>>);

impl NodeLink for Collect {
    fn submit(&self, tx: Transaction) -> bool {
        self.0.lock().unwrap().push(tx);
        true
    }

    fn info(&self) -> NodeInfo {
        NodeInfo { protocol: "none".into(), members: 1, ..NodeInfo::default() }
    }
}

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut socket = TcpStream::connect(addr).unwrap();
    write!(socket, "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

fn main() {
    let (alice, bob) = (SecretKey::from_seed(1, 1), SecretKey::from_seed(1, 2));
    let account = |key: &SecretKey, id: u64, asset: &str| GenesisAccount {
        key: PublicKeyBytes::from(key.public_key()),
        account: AccountId(id),
        deposits: vec![(asset.into(), 1_000_000)],
        role: AccountRole::Trader,
    };
    let genesis = MarketGenesis {
        markets: vec![MarketSpec::new("ETH-USD", "ETH", "USD")],
        accounts: vec![account(&alice, 1, "USD"), account(&bob, 2, "ETH")],
    };
    let metrics = Arc::new(Metrics::new());
    let view = MarketView::new(&genesis, ViewLimits::default(), Arc::clone(&metrics));
    let mut market = MarketApp::new(&genesis).with_observer(view.observer());

    // One final block: a bid for 5 at 100, an ask of 3 at 100 and a resting ask at 105.
    let order = |key: &SecretKey, nonce: u64, o: NewOrder| {
        Transaction::new_signed(key, nonce, OrderAction::from(o).encode()).unwrap()
    };
    let txs = vec![
        order(&alice, 0, NewOrder::limit(AccountId(1), "ETH-USD", 1, Side::Buy, 100, 5)),
        order(&bob, 0, NewOrder::limit(AccountId(2), "ETH-USD", 1, Side::Sell, 100, 3)),
        order(&bob, 1, NewOrder::limit(AccountId(2), "ETH-USD", 2, Side::Sell, 105, 4)),
    ];
    let block =
        Block::new(Digest::ZERO, Round(1), Height(1), NodeId(0), 0, Batch::new(txs).unwrap());
    market.apply(&block, &mut DirectCheck);

    let api =
        Api { view, node: Arc::new(Collect::default()), metrics, limits: ApiLimits::default() };
    let server = ApiServer::start(TcpListener::bind("127.0.0.1:0").unwrap(), api).unwrap();
    let book = get(server.addr(), "/v1/markets/ETH-USD/book?depth=5");
    println!("GET /v1/markets/ETH-USD/book?depth=5\n{book}");
    let book: serde_json::Value = serde_json::from_str(&book).unwrap();
    assert_eq!(book["bids"], serde_json::json!([[100, 2]]));
    assert_eq!(book["asks"], serde_json::json!([[105, 4]]));
    let document = get(server.addr(), "/v1/openapi.json");
    assert!(document.contains("\"openapi\""), "{document}");
    let metrics = get(server.addr(), "/metrics");
    assert!(metrics.contains("agora_finalized_height 1"), "{metrics}");
    server.stop();
}
