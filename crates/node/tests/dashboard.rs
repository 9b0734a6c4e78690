//! The live page in a real browser: headless Chromium loads node 1's page of a four-node
//! testnet while traders cross orders at node 0, and the page it renders shows finalized
//! blocks and the trades, which reach it only over the WebSocket.
//!
//! It needs Chromium, so it is ignored by a plain `cargo test`; `cargo xtask ci` installs
//! Chromium when it is missing and runs this test by name.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agora_client::Signer;
use agora_orderbook::{AccountId, NewOrder, Side};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod common;

use common::{MARKET, Testnet, trader};

/// Chromium's names on the machines we run on.
const BROWSERS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];
/// The browser gets this long to show everything, then it is ended (by its process id).
const BROWSER_WAIT: Duration = Duration::from_secs(90);

fn browser() -> Option<&'static str> {
    BROWSERS.into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    })
}

/// A headless Chromium this test started, driven over the DevTools protocol; ended by its
/// process id when dropped.
struct Browser {
    child: Child,
    page: WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts `binary` and opens `url` in a new tab.
    async fn open(binary: &str, url: &str) -> Self {
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,860",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Chromium says where its DevTools endpoint listens on its first lines.
        // The rest of its stderr is drained, so that it never blocks writing there.
        let stderr = child.stderr.take().unwrap();
        let (found, endpoint) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("DevTools listening on ws://").nth(1)
                    && let Some(found) = found.take()
                {
                    let _ = found.send(rest.split('/').next().unwrap_or_default().to_owned());
                }
            }
        });
        let endpoint = tokio::time::timeout(BROWSER_WAIT, endpoint).await;
        let Ok(Ok(endpoint)) = endpoint else {
            let _ = child.kill();
            panic!("Chromium did not open its DevTools endpoint");
        };
        // A new tab on the page, and its own DevTools socket.
        let target = http(&endpoint, &format!("PUT /json/new?{url}")).await;
        let target: serde_json::Value = serde_json::from_str(&target).unwrap();
        let socket = target["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
        let (page, _) = tokio_tungstenite::connect_async(socket).await.unwrap();
        Self { child, page, next_id: 1 }
    }

    /// Calls a DevTools method on the page and returns its result.
    async fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::json!({ "id": id, "method": method, "params": params });
        self.page.send(Message::Text(request.to_string().into())).await.unwrap();
        loop {
            let message = self.page.next().await.expect("DevTools closed").unwrap();
            let Message::Text(text) = message else { continue };
            let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if value["id"] == id {
                return value["result"].clone();
            }
        }
    }

    /// The page's DOM as it is now.
    async fn dom(&mut self) -> String {
        let params = serde_json::json!({
            "expression": "document.documentElement.outerHTML",
            "returnByValue": true,
        });
        let result = self.call("Runtime.evaluate", params).await;
        result["result"]["value"].as_str().unwrap_or_default().to_owned()
    }

    /// A PNG of the page as it is now.
    async fn screenshot(&mut self) -> Vec<u8> {
        let result = self.call("Page.captureScreenshot", serde_json::json!({})).await;
        let data = result["data"].as_str().unwrap_or_default();
        base64::engine::general_purpose::STANDARD.decode(data).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Only the process this test started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request line to `host` (no body); the answer's body, by its
/// `content-length` (Chromium's DevTools server keeps the connection open).
async fn http(host: &str, request_line: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("{request_line} HTTP/1.1\r\nhost: {host}\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = socket.read(&mut chunk).await.unwrap();
        answer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length || read == 0 {
                return body.to_owned();
            }
        }
        assert!(read > 0, "the DevTools server closed early: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium: `cargo xtask ci` installs it and runs this test"]
async fn the_live_page_shows_finalized_blocks_and_trades_from_its_stream() {
    let browser = browser().expect("no Chromium: install it (`apt install chromium`)");
    let root = tempfile::tempdir().unwrap();
    let net = Testnet::start(root.path());
    let clients = net.clients();
    let url = format!("http://{}/", net.apis[1].addr());

    // Traders cross 2 lots every 100 ms at node 0 while the page is open, for a bounded time.
    let trading = {
        let client = clients[0].clone();
        tokio::spawn(async move {
            let mut alice = Signer::new(trader(1), 0);
            let mut bob = Signer::new(trader(2), 0);
            for i in 0..300u64 {
                let price = 1_000 + i % 7;
                let bid = NewOrder::limit(AccountId(1), MARKET, i, Side::Buy, price, 2);
                let ask = NewOrder::limit(AccountId(2), MARKET, i, Side::Sell, price, 2);
                client.submit(&alice.sign(&bid.into())).await.unwrap();
                client.submit(&bob.sign(&ask.into())).await.unwrap();
                // A resting bid, so that the book has depth to draw.
                let rest =
                    NewOrder::limit(AccountId(1), MARKET, 10_000 + i, Side::Buy, 900 + i % 20, 1);
                client.submit(&alice.sign(&rest.into())).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let looked = tokio::time::timeout(2 * BROWSER_WAIT, async {
        let mut chromium = Browser::open(browser, &url).await;
        // The page, polled until it shows what it must, within the bound.
        let deadline = Instant::now() + BROWSER_WAIT;
        let page = loop {
            let page = chromium.dom().await;
            let done = page.matches("class=\"trade ").count() >= 3
                && page.contains("class=\"block\"")
                && page.contains("class=\"bid\"><span");
            if done || Instant::now() > deadline {
                break page;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        if let Ok(path) = std::env::var("AGORA_DASHBOARD_SCREENSHOT") {
            std::fs::write(&path, chromium.screenshot().await).unwrap();
        }
        page
    })
    .await;
    trading.abort();
    let page = looked.expect("the browser did not answer in time");

    assert!(page.contains("id=\"chain\""), "not the live page: {page}");
    let blocks = page.matches("class=\"block\"").count();
    let trades = page.matches("class=\"trade ").count();
    assert!(blocks > 0, "no finalized block on the page: {page}");
    assert!(trades > 0, "no trade on the page: {page}");
    assert!(page.contains("class=\"ok\">live<"), "the stream is not live: {page}");
    assert!(page.contains("class=\"bid\"><span"), "no book depth: {page}");
    tokio::task::spawn_blocking(move || net.stop()).await.unwrap();
}
