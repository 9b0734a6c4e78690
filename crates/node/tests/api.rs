//! Four nodes in one process, each serving its API on loopback: orders placed at different
//! nodes through agora-client cross, every node's stream shows the trade, every node's REST API
//! serves the same book and accounts, and bad input gets the documented typed answers.

use std::time::Duration;

use agora_client::{Client, ClientError, SignedOrder, Signer};
use agora_market::OrderAction;
use agora_orderbook::{AccountId, NewOrder, Side};
use agora_types::Transaction;

mod common;

use common::{MARKET, N, Testnet, WAIT, next_on, trader, wait_final};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_orders_at_different_nodes_trade_on_every_stream_and_every_book_agrees() {
    let root = tempfile::tempdir().unwrap();
    let net = Testnet::start(root.path());
    let clients = net.clients();

    // Every node's trade and book streams, opened before anything trades.
    let mut trade_streams = Vec::new();
    let mut book_streams = Vec::new();
    for client in &clients {
        trade_streams.push(client.stream(&["trades:ETH-USD", "blocks"]).await.unwrap());
        let mut book = client.stream(&["book:ETH-USD"]).await.unwrap();
        let snapshot = next_on(&mut book, "book:ETH-USD").await;
        assert_eq!(snapshot["data"]["type"], "snapshot", "{snapshot}");
        book_streams.push((book, snapshot["data"]["seq"].as_u64().unwrap()));
    }

    let mut alice = Signer::resume(trader(1), &clients[0], AccountId(1)).await.unwrap();
    let mut bob = Signer::resume(trader(2), &clients[2], AccountId(2)).await.unwrap();
    let bid = alice.sign(&NewOrder::limit(AccountId(1), MARKET, 1, Side::Buy, 2_000, 5).into());
    let rest = alice.sign(&NewOrder::limit(AccountId(1), MARKET, 2, Side::Buy, 1_990, 7).into());
    let ask = bob.sign(&NewOrder::limit(AccountId(2), MARKET, 1, Side::Sell, 2_000, 3).into());
    for (client, tx) in [(&clients[0], &bid), (&clients[1], &rest), (&clients[2], &ask)] {
        let submitted = client.submit(tx).await.unwrap();
        assert_eq!((submitted.tx_id, submitted.status), (tx.id().to_string(), "pending".into()));
    }
    // Submitting the same transaction again is harmless.
    assert_eq!(clients[0].submit(&bid).await.unwrap().status, "pending");

    // The trade appears on every node's stream: 3 lots at the resting bid's price.
    for stream in &mut trade_streams {
        let message = next_on(stream, "trades:ETH-USD").await;
        let trade = &message["data"]["trades"][0];
        assert_eq!(
            (trade["price"].as_u64(), trade["qty"].as_u64()),
            (Some(2_000), Some(3)),
            "{message}"
        );
        // Whichever came first rested: the trade is between the two, either way round.
        let pair = (trade["maker_account"].as_u64(), trade["taker_account"].as_u64());
        assert!(pair == (Some(1), Some(2)) || pair == (Some(2), Some(1)), "{message}");
    }
    // Each book stream's updates are numbered in sequence from its snapshot.
    for (stream, seq) in &mut book_streams {
        let update = next_on(stream, "book:ETH-USD").await;
        assert_eq!(update["data"]["type"], "update");
        assert_eq!(update["data"]["seq"].as_u64(), Some(*seq + 1), "{update}");
    }

    // Every node knows the outcomes, with the fills.
    // The trade is an event of whichever of the bid and the ask executed second.
    for client in &clients {
        let mut trades = 0;
        for tx in [&bid, &ask] {
            let outcome = wait_final(client, tx).await.outcome.unwrap();
            assert_eq!(outcome.status, "executed");
            let trade =
                |e: &&agora_orderbook::Event| matches!(e, agora_orderbook::Event::Trade { .. });
            trades += outcome.events.iter().filter(trade).count();
        }
        assert_eq!(trades, 1);
        wait_final(client, &rest).await;
    }
    // Every node serves the same book and the same accounts at the same height.
    let mut books = Vec::new();
    for client in &clients {
        let book = tokio::time::timeout(WAIT, async {
            loop {
                let book = client.book(MARKET, 10).await.unwrap();
                if book.bids.len() == 2 {
                    return book;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(book.bids, vec![(2_000, 2), (1_990, 7)]);
        assert!(book.asks.is_empty());
        books.push((book.bids, book.asks));
        let account = client.account(AccountId(1)).await.unwrap();
        assert_eq!(account.open_orders.len(), 2, "{account:?}");
        assert_eq!(account.balances["ETH"].available, 3);
        assert_eq!(account.nonce_floor, 2);
    }
    assert!(books.windows(2).all(|w| w[0] == w[1]));

    // The status and the metrics say the node is live and linked.
    let status = clients[3].status().await.unwrap();
    assert_eq!((status.node, status.protocol.as_str(), status.members), (3, "simplex", N));
    assert!(status.height > 0);
    let metrics = clients[0].metrics().await.unwrap();
    assert!(metrics.contains("agora_finalized_height"), "{metrics}");
    assert!(metrics.contains("agora_api_requests_total{route=\"/v1/orders\",status=\"202\"}"));
    for line in [
        "agora_mempool_pending{lane=\"all\"}",
        "agora_store_sync_seconds_count{store=\"journal\"}",
        "agora_store_sync_seconds_count{store=\"blocks\"}",
        "agora_consensus_messages_total{kind=\"vote\",direction=\"out\"}",
        "agora_consensus_bytes_total{kind=\"vote\",direction=\"in\"}",
    ] {
        assert!(metrics.contains(line), "no {line} in {metrics}");
    }
    // A block comes with the certificates that prove it final: Simplex's finalize quorum.
    let block = clients[1].block(status.height).await.unwrap();
    assert_eq!(block.height, status.height);
    let signers = block.certificates.iter().map(|c| c.signers.len()).max().unwrap_or(0);
    assert!(signers >= 3, "no quorum certificate: {block:?}");

    bad_input(&clients[0], &bid, &mut alice).await;
    // The nodes' own runtimes end off this one's threads.
    tokio::task::spawn_blocking(move || net.stop()).await.unwrap();
}

/// Bad input gets typed errors and changes nothing.
async fn bad_input(client: &Client, final_tx: &Transaction, alice: &mut Signer) {
    let reason = |r: Result<agora_client::Submitted, ClientError>| {
        r.err().and_then(|e| e.reason().map(str::to_owned)).unwrap_or_default()
    };
    // A forged signature: someone else's over the same transaction.
    let action = OrderAction::Cancel { market: MARKET.into(), id: 1 };
    let mut mallory = Signer::new(trader(9), 50);
    let forged = mallory.sign(&action);
    let honest = alice.sign(&action);
    let forged = Transaction::from_parts(
        *honest.sender(),
        honest.nonce(),
        honest.payload().clone(),
        *forged.signature(),
    )
    .unwrap();
    assert_eq!(reason(client.submit(&forged).await), "bad_signature");
    assert_eq!(reason(client.submit(&mallory.sign(&action)).await), "unknown_signer");
    // A nonce already used by a final transaction, with other content.
    let stale = Transaction::new_signed(&trader(1), final_tx.nonce(), action.encode()).unwrap();
    assert_eq!(reason(client.submit(&stale).await), "stale_nonce");
    // The final transaction itself is answered as final.
    assert_eq!(client.submit(final_tx).await.unwrap().status, "final");
    // Raw bodies: not JSON, a payload that is no order, a body over the limit.
    let raw = |body: String| raw_post(client.addr(), body);
    let (status, body) = raw("{\"sender\": 1".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"malformed\""));
    let garbage =
        Transaction::new_signed(&trader(1), 999, bytes::Bytes::from_static(b"x")).unwrap();
    let (status, body) =
        raw(serde_json::to_string(&SignedOrder::from_transaction(&garbage)).unwrap()).await;
    assert_eq!((status, body.contains("\"malformed\"")), (400, true), "{body}");
    let (status, _) = raw(format!("{{\"payload\": \"{}\"}}", "ab".repeat(64 * 1024))).await;
    assert_eq!(status, 413);
    // Unknown things are 404, bad paths 400.
    let err = client.book("BTC-USD", 5).await.unwrap_err();
    assert_eq!(err.reason(), Some("not_found"));
    let err = client.book(MARKET, 1_000_000).await.unwrap_err();
    assert_eq!(err.reason(), Some("malformed"));
    let err = client.account(AccountId(77)).await.unwrap_err();
    assert_eq!(err.reason(), Some("not_found"));
    let err = client.block(u64::MAX).await.unwrap_err();
    assert_eq!(err.reason(), Some("not_found"));
    // A stream refuses an unknown channel.
    let err = client.stream(&["trades:BTC-USD"]).await.unwrap_err();
    assert_eq!(err.reason(), Some("unknown_channel"));
}

/// POSTs `body` to `/v1/orders` as it is; the status and the body.
async fn raw_post(addr: std::net::SocketAddr, body: String) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let _ = socket.write_all(body.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, socket.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}
