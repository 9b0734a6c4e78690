//! Hostile input at one node's API: random and broken bodies, unknown fields, oversized
//! requests, a connection over its rate, junk and too many subscriptions on the stream. Every
//! answer is a typed 4xx, nothing reaches the node unverified, and the API keeps serving.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_api::{Api, ApiLimits, ApiServer, MarketView, Metrics, NodeInfo, NodeLink, ViewLimits};
use agora_client::{Client, SignedOrder, Signer};
use agora_crypto::{PublicKeyBytes, SecretKey};
use agora_market::{AccountRole, GenesisAccount, MarketGenesis, OrderAction};
use agora_orderbook::{AccountId, MarketSpec};
use agora_types::Transaction;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// What reached the node.
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

fn key() -> SecretKey {
    SecretKey::from_seed(3, 1)
}

fn serve(limits: ApiLimits) -> (ApiServer, Arc<Collect>) {
    let genesis = MarketGenesis {
        markets: vec![MarketSpec::new("ETH-USD", "ETH", "USD")],
        accounts: vec![GenesisAccount {
            key: PublicKeyBytes::from(key().public_key()),
            account: AccountId(1),
            deposits: vec![("USD".into(), 1_000_000)],
            role: AccountRole::Trader,
        }],
    };
    let metrics = Arc::new(Metrics::new());
    let view = MarketView::new(&genesis, ViewLimits::default(), Arc::clone(&metrics));
    let node = Arc::new(Collect::default());
    let api = Api { view, node: node.clone(), metrics, limits };
    (ApiServer::start(TcpListener::bind("127.0.0.1:0").unwrap(), api).unwrap(), node)
}

/// One raw request on a fresh connection: the status code.
async fn raw(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let _ = socket.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// splitmix64: the test's random bytes, from its seed.
fn draw(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_typed_refusals_and_nothing_unverified_reaches_the_node() {
    let (server, node) = serve(ApiLimits::default());
    let addr = server.addr();
    let tx = Signer::new(key(), 0).sign(&OrderAction::CancelAll { market: None });
    let good = serde_json::to_string(&SignedOrder::from_transaction(&tx)).unwrap();
    let seed = 20_261_206;
    let mut state = seed;
    // Random bytes, and every prefix of a good body.
    let mut bodies: Vec<Vec<u8>> = (0..100)
        .map(|_| {
            let len = (draw(&mut state) % 300) as usize;
            (0..len).map(|_| draw(&mut state) as u8).collect()
        })
        .collect();
    bodies.extend((0..good.len()).step_by(7).map(|n| good.as_bytes()[..n].to_vec()));
    // Unknown fields, wrong types, bad hex, a high-s or zero signature, a huge nonce.
    let field = |from: &str, to: &str| good.replacen(from, to, 1).into_bytes();
    bodies.push(field("{", "{\"extra\": 1, "));
    bodies.push(field("\"nonce\":0", "\"nonce\":\"zero\""));
    bodies.push(field("\"nonce\":0", "\"nonce\":-1"));
    bodies.push(field("\"payload\":\"", "\"payload\":\"zz"));
    let sig = serde_json::to_value(tx.signature()).unwrap();
    bodies.push(field(sig.as_str().unwrap(), &"00".repeat(64)));
    bodies.push(field(sig.as_str().unwrap(), &"ff".repeat(64)));
    for (k, body) in bodies.iter().enumerate() {
        let status = raw(addr, "POST", "/v1/orders", body).await;
        assert!((400..500).contains(&status), "seed {seed}, body {k} ({body:?}): {status}");
    }
    // Paths and queries that are not numbers, and a method a route does not have.
    for (method, path) in [
        ("GET", "/v1/orders/not-hex"),
        ("GET", "/v1/accounts/-1"),
        ("GET", "/v1/blocks/1e9"),
        ("GET", "/v1/markets/ETH-USD/book?depth=lots"),
        ("DELETE", "/v1/orders"),
        ("GET", "/v1/nothing"),
    ] {
        let status = raw(addr, method, path, b"").await;
        assert!((400..500).contains(&status), "{method} {path}: {status}");
    }
    assert!(node.0.lock().unwrap().is_empty(), "something reached the node");
    // The good body still goes through, once.
    assert_eq!(raw(addr, "POST", "/v1/orders", good.as_bytes()).await, 202);
    assert_eq!(node.0.lock().unwrap().len(), 1);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_rate_gets_429_and_the_stream_bounds_its_subscriptions() {
    let limits = ApiLimits { requests_per_sec: 20, subscriptions: 3, ..ApiLimits::default() };
    let (server, _) = serve(limits);
    // One client, one kept-alive connection: past its burst, 429 with the reason.
    let client = Client::new(&server.addr().to_string()).unwrap();
    let mut limited = 0;
    for _ in 0..60 {
        if let Err(error) = client.status().await {
            assert_eq!(error.reason(), Some("rate_limited"), "{error}");
            limited += 1;
        }
    }
    assert!(limited > 0, "60 requests at once stayed under a rate of 20 a second");

    // The stream: junk is answered, never fatal; a fourth channel is refused.
    let url = format!("ws://{}/v1/stream", server.addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut ask = async |text: &str| {
        socket.send(Message::Text(text.into())).await.unwrap();
        loop {
            if let Message::Text(reply) = socket.next().await.unwrap().unwrap() {
                return serde_json::from_str::<serde_json::Value>(reply.as_str()).unwrap();
            }
        }
    };
    assert_eq!(ask("not json").await["error"], "malformed");
    assert_eq!(ask("{\"subscribe\": \"blocks\", \"extra\": 1}").await["error"], "malformed");
    assert_eq!(ask("{\"subscribe\": \"trades:NOPE\"}").await["error"], "unknown_channel");
    assert_eq!(ask("{\"subscribe\": \"account:999\"}").await["error"], "unknown_channel");
    for channel in ["blocks", "trades:ETH-USD", "account:1"] {
        let reply = ask(&format!("{{\"subscribe\": \"{channel}\"}}")).await;
        assert_eq!(reply["subscribed"], channel);
    }
    let reply = ask("{\"subscribe\": \"book:ETH-USD\"}").await;
    assert_eq!(reply["error"], "too_many_subscriptions");
    // A message over the stream's size limit ends the connection rather than the node.
    let big = format!("{{\"subscribe\": \"{}\"}}", "x".repeat(8 * 1024));
    let _ = socket.send(Message::Text(big.into())).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the oversized message did not end the stream");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_order_on_its_own() {
    let (server, node) = serve(ApiLimits { batch_orders: 4, ..ApiLimits::default() });
    let client = Client::new(&server.addr().to_string()).unwrap();
    let mut signer = Signer::new(key(), 0);
    let good = signer.sign(&OrderAction::CancelAll { market: None });
    let other = signer.sign(&OrderAction::CancelAll { market: None });
    let forged = Transaction::from_parts(
        *other.sender(),
        other.nonce() + 1,
        other.payload().clone(),
        *other.signature(),
    )
    .unwrap();
    let stranger =
        Signer::new(SecretKey::from_seed(3, 9), 0).sign(&OrderAction::CancelAll { market: None });
    let results =
        client.submit_batch(&[good.clone(), forged, stranger, good.clone()]).await.unwrap();
    let reasons: Vec<String> = results
        .iter()
        .map(|r| match r {
            Ok(s) => s.status.clone(),
            Err(e) => e.error.clone(),
        })
        .collect();
    assert_eq!(reasons, ["pending", "bad_signature", "unknown_signer", "pending"]);
    assert_eq!(node.0.lock().unwrap().len(), 1, "the duplicate went in once");
    // Over the batch limit: refused whole.
    let five = vec![other; 5];
    let error = client.submit_batch(&five).await.unwrap_err();
    assert_eq!(error.reason(), Some("malformed"));
    server.stop();
}
