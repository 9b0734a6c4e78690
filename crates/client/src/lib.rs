//! A Rust client of an agora node's API (`agora-api`): typed requests, transactions signed with
//! managed nonces, and the node's WebSocket channels as a stream of messages.
//!
//! ```no_run
//! # async fn run() -> Result<(), agora_client::ClientError> {
//! use agora_client::{Client, Signer};
//! use agora_crypto::SecretKey;
//! use agora_orderbook::{AccountId, NewOrder, Side};
//!
//! let client = Client::new("http://127.0.0.1:8080")?;
//! let key = SecretKey::from_seed(1, 1);
//! let mut signer = Signer::resume(key, &client, AccountId(1)).await?;
//! let order = NewOrder::limit(AccountId(1), "ETH-USD", 1, Side::Buy, 2_000, 5);
//! let submitted = client.submit(&signer.sign(&order.into())).await?;
//! let mut trades = client.stream(&["trades:ETH-USD"]).await?;
//! while let Some(message) = trades.next().await? {
//!     println!("{message}");
//! }
//! # Ok(()) }
//! ```
//!
//! Every answer's body is read up to [`BODY_BYTES_MAX`]; an error answer becomes
//! [`ClientError::Api`] with the node's machine-readable reason.

use std::net::SocketAddr;

pub use agora_api::wire::{
    AccountView, ApiError, BatchAnswer, BatchItem, BlockView, BookView, OrderBatch, OrderStatus,
    SignedOrder, Status, StreamRequest, Submitted,
};
use agora_crypto::{Digest, SecretKey};
use agora_market::OrderAction;
use agora_orderbook::AccountId;
use agora_types::Transaction;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::http::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An answer's body at most.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not `http://HOST:PORT` or `HOST:PORT`.
    #[error("bad address {0}: expected http://IP:PORT")]
    Address(String),
    /// The node could not be reached, or the connection failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The node answered with an error.
    #[error("{status}: {} ({})", .error.error, .error.message)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The node's reason.
        error: ApiError,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl ClientError {
    /// The node's machine-readable reason, for an error answer.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.error),
            _ => None,
        }
    }
}

/// A client of one node.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the node whose API is at `address` (`http://127.0.0.1:8080` or
    /// `127.0.0.1:8080`).
    pub fn new(address: &str) -> Result<Self, ClientError> {
        let trimmed = address.trim_start_matches("http://").trim_end_matches('/');
        let addr = trimmed.parse().map_err(|_| ClientError::Address(address.to_owned()))?;
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Ok(Self { addr, http })
    }

    /// Where the node's API is.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, T), ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let response =
            self.http.request(request).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let error = serde_json::from_slice(&bytes).unwrap_or_else(|_| ApiError {
                error: "unknown".into(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            });
            return Err(ClientError::Api { status: status.as_u16(), error });
        }
        let value =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok((status, value))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Ok(self.call(Method::GET, path, None).await?.1)
    }

    /// Submits a signed transaction: `pending` once the mempool took it (or had it), `final`
    /// if it is final already.
    pub async fn submit(&self, tx: &Transaction) -> Result<Submitted, ClientError> {
        let body = serde_json::to_vec(&SignedOrder::from_transaction(tx))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(self.call(Method::POST, "/v1/orders", Some(body)).await?.1)
    }

    /// Submits up to the node's batch limit (1,000 by default) of signed transactions in one
    /// request; each is checked and admitted on its own, and its result comes back in order.
    pub async fn submit_batch(
        &self,
        txs: &[Transaction],
    ) -> Result<Vec<Result<Submitted, ApiError>>, ClientError> {
        let batch = OrderBatch { orders: txs.iter().map(SignedOrder::from_transaction).collect() };
        let body = serde_json::to_vec(&batch).map_err(|e| ClientError::Decode(e.to_string()))?;
        let answer: BatchAnswer = self.call(Method::POST, "/v1/orders/batch", Some(body)).await?.1;
        if answer.results.len() != txs.len() {
            return Err(ClientError::Decode(format!(
                "{} results for {} orders",
                answer.results.len(),
                txs.len()
            )));
        }
        Ok(answer
            .results
            .into_iter()
            .map(|item| match (item.tx_id, item.status) {
                (Some(tx_id), Some(status)) => Ok(Submitted { tx_id, status }),
                _ => Err(ApiError {
                    error: item.error.unwrap_or_else(|| "unknown".into()),
                    message: item.message.unwrap_or_default(),
                }),
            })
            .collect())
    }

    /// A transaction's status.
    pub async fn order(&self, tx: &Digest) -> Result<OrderStatus, ClientError> {
        self.get(&format!("/v1/orders/{tx}")).await
    }

    /// The markets, with their best bid and ask.
    pub async fn markets(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/v1/markets").await
    }

    /// A market's top `depth` levels a side.
    pub async fn book(&self, market: &str, depth: usize) -> Result<BookView, ClientError> {
        self.get(&format!("/v1/markets/{market}/book?depth={depth}")).await
    }

    /// An account's balances, open orders and nonce floor.
    pub async fn account(&self, account: AccountId) -> Result<AccountView, ClientError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            state: AccountView,
        }
        let answer: Answer = self.get(&format!("/v1/accounts/{}", account.0)).await?;
        Ok(answer.state)
    }

    /// A recent block.
    pub async fn block(&self, height: u64) -> Result<BlockView, ClientError> {
        self.get(&format!("/v1/blocks/{height}")).await
    }

    /// The newest block the node applied.
    pub async fn latest_block(&self) -> Result<BlockView, ClientError> {
        self.get("/v1/blocks/latest").await
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get("/v1/status").await
    }

    /// The node's metrics, as Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let request = Request::get(format!("http://{}/metrics", self.addr))
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let response =
            self.http.request(request).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let bytes = Limited::new(response.into_body(), BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Opens the node's stream subscribed to `channels`; each subscription is confirmed
    /// before this returns (a `book:` channel's snapshot follows its confirmation).
    pub async fn stream(&self, channels: &[&str]) -> Result<Stream, ClientError> {
        let url = format!("ws://{}/v1/stream", self.addr);
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let mut stream = Stream { socket, held: Vec::new() };
        for channel in channels {
            stream.subscribe(channel).await?;
        }
        Ok(stream)
    }
}

/// A node's WebSocket stream.
#[derive(Debug)]
pub struct Stream {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Messages that arrived while a subscription waited for its confirmation.
    held: Vec<serde_json::Value>,
}

impl Stream {
    /// Subscribes to `channel` and waits for the node to confirm it.
    pub async fn subscribe(&mut self, channel: &str) -> Result<(), ClientError> {
        self.send(&StreamRequest::Subscribe(channel.to_owned())).await?;
        loop {
            let Some(message) = self.read().await? else {
                return Err(ClientError::Transport("the stream closed".into()));
            };
            if message.get("subscribed").and_then(|c| c.as_str()) == Some(channel) {
                return Ok(());
            }
            if let Some(error) = message.get("error").and_then(|e| e.as_str())
                && error != "lagged"
            {
                let message = message.get("message").and_then(|m| m.as_str()).unwrap_or("");
                let error = ApiError { error: error.to_owned(), message: message.to_owned() };
                return Err(ClientError::Api { status: 400, error });
            }
            self.held.push(message);
        }
    }

    /// Stops receiving `channel`.
    pub async fn unsubscribe(&mut self, channel: &str) -> Result<(), ClientError> {
        self.send(&StreamRequest::Unsubscribe(channel.to_owned())).await
    }

    async fn send(&mut self, request: &StreamRequest) -> Result<(), ClientError> {
        let text =
            serde_json::to_string(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    async fn read(&mut self) -> Result<Option<serde_json::Value>, ClientError> {
        loop {
            let Some(message) = self.socket.next().await else { return Ok(None) };
            match message.map_err(|e| ClientError::Transport(e.to_string()))? {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str())
                        .map(Some)
                        .map_err(|e| ClientError::Decode(e.to_string()));
                }
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
    }

    /// The next message (`{"channel": …, "data": …}`, or `{"error": "lagged", "missed": N}`
    /// when this subscriber fell behind, after which the node closes the stream), or `None`
    /// once the node closed it.
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, ClientError> {
        if !self.held.is_empty() {
            return Ok(Some(self.held.remove(0)));
        }
        self.read().await
    }
}

impl Stream {
    /// The stream as an async stream of messages (see [`Stream::next`]), ending when the node
    /// closes it or at the first error.
    pub fn into_messages(
        self,
    ) -> impl futures_util::Stream<Item = Result<serde_json::Value, ClientError>> {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut stream = state?;
            match stream.next().await {
                Ok(Some(message)) => Some((Ok(message), Some(stream))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        })
    }
}

/// Signs order actions for one account with consecutive nonces.
#[derive(Debug, Clone)]
pub struct Signer {
    key: SecretKey,
    next_nonce: u64,
}

impl Signer {
    /// A signer whose next transaction uses `next_nonce`.
    pub fn new(key: SecretKey, next_nonce: u64) -> Self {
        Self { key, next_nonce }
    }

    /// A signer that goes on from the account's nonce floor as the node knows it. Nonces of
    /// transactions still pending are not known to the node's finalized state: resume only an
    /// account with nothing in flight.
    pub async fn resume(
        key: SecretKey,
        client: &Client,
        account: AccountId,
    ) -> Result<Self, ClientError> {
        let view = client.account(account).await?;
        Ok(Self::new(key, view.nonce_floor))
    }

    /// The next nonce it will use.
    pub fn next_nonce(&self) -> u64 {
        self.next_nonce
    }

    /// `action`, signed with the next nonce.
    pub fn sign(&mut self, action: &OrderAction) -> Transaction {
        let tx = Transaction::new_signed(&self.key, self.next_nonce, action.encode())
            .expect("an order action is far below the payload limit");
        self.next_nonce += 1;
        tx
    }
}
