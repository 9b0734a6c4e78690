//! agora-client against an API with no consensus behind it: the client signs and submits two
//! crossing orders, the example finalizes what the "node" collected as one block of its
//! market, and the client sees the trade on its stream, the order final, and the book.
//!
//! Run it: `cargo run -p agora-client --example query_a_node`.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_api::{Api, ApiLimits, ApiServer, MarketView, Metrics, NodeInfo, NodeLink, ViewLimits};
use agora_client::{Client, Signer};
use agora_consensus::Application;
use agora_crypto::{Digest, DirectCheck, PublicKeyBytes, SecretKey};
use agora_market::{AccountRole, GenesisAccount, MarketApp, MarketGenesis};
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), agora_client::ClientError> {
    let (alice, bob) = (SecretKey::from_seed(2, 1), SecretKey::from_seed(2, 2));
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
    let node = Arc::new(Collect::default());
    let api = Api { view, node: node.clone(), metrics, limits: ApiLimits::default() };
    let server = ApiServer::start(TcpListener::bind("127.0.0.1:0").unwrap(), api).unwrap();

    let client = Client::new(&format!("http://{}", server.addr()))?;
    let mut trades = client.stream(&["trades:ETH-USD"]).await?;
    let mut alice = Signer::resume(alice, &client, AccountId(1)).await?;
    let mut bob = Signer::resume(bob, &client, AccountId(2)).await?;
    let bid = alice.sign(&NewOrder::limit(AccountId(1), "ETH-USD", 1, Side::Buy, 100, 5).into());
    let ask = bob.sign(&NewOrder::limit(AccountId(2), "ETH-USD", 1, Side::Sell, 100, 3).into());
    println!("submitted: {:?}", client.submit(&bid).await?);
    println!("submitted: {:?}", client.submit(&ask).await?);
    assert_eq!(client.order(&bid.id()).await?.status, "pending");

    // What consensus would do: the submitted transactions become the next final block.
    let txs = std::mem::take(&mut *node.0.lock().unwrap());
    let block =
        Block::new(Digest::ZERO, Round(1), Height(1), NodeId(0), 0, Batch::new(txs).unwrap());
    market.apply(&block, &mut DirectCheck);

    let trade = tokio::time::timeout(Duration::from_secs(10), trades.next()).await.unwrap()?;
    println!("stream: {}", trade.unwrap());
    let status = client.order(&ask.id()).await?;
    println!(
        "order {}: {} at height {}",
        status.tx_id,
        status.status,
        status.outcome.unwrap().height
    );
    let book = client.book("ETH-USD", 5).await?;
    println!("book: bids {:?}, asks {:?}", book.bids, book.asks);
    assert_eq!(book.bids, vec![(100, 2)]);
    server.stop();
    Ok(())
}
