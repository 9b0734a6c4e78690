//! The routes, and the server that runs them beside a node.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/orders` | 202 `{tx_id, status}`; 400 `malformed`, `bad_signature`, `unknown_signer`; 409 `stale_nonce`; 413 over [`ApiLimits::body_bytes`]; 429 `mempool_full` with `Retry-After` |
//! | `POST /v1/orders/batch` | `{"orders": [...]}`, up to [`ApiLimits::batch_orders`]: 200 with one result per order, `{tx_id, status}` or `{error, message}` |
//! | `GET /v1/orders/{tx_id}` | `pending`, or `final` with its height and events; 404 if unknown |
//! | `GET /v1/markets` | the markets, with best bid and ask |
//! | `GET /v1/markets/{market}/book?depth=N` | the top N levels a side (default 20, at most [`ApiLimits::depth`]) |
//! | `GET /v1/accounts/{id}` | balances, holds, open orders, nonce floor |
//! | `GET /v1/blocks/{height}` | header, certificates, state digest, transaction ids (the recent window; `latest` for the tip) |
//! | `GET /v1/status` | height, protocol, peers, recent finality latency |
//! | `GET /v1/stream` | WebSocket: `{"subscribe": "blocks" \| "trades:M" \| "book:M" \| "account:N"}` |
//! | `GET /metrics` | Prometheus text ([`crate::Metrics`]) |
//! | `GET /v1/openapi.json` | the OpenAPI document ([`ApiDoc`], kept in `docs/openapi.json`) |
//! | `GET /` | the live page: status, finalized blocks, book depth and trades, over the stream |
//!
//! Every error is JSON ([`crate::wire::ApiError`]). Each connection is rate limited
//! ([`ApiLimits::requests_per_sec`]: 429 `rate_limited`); a stream subscriber that falls
//! behind the broadcast's buffer, or does not take a message within
//! [`ApiLimits::stream_send_wait`], is told and dropped.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use agora_crypto::Digest;
use agora_market::OrderAction;
use agora_orderbook::AccountId;
use agora_types::{Transaction, codec};
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, oneshot};

use crate::metrics::{ReasonLabels, RouteLabels};
use crate::view::Tagged;
use crate::wire::{
    AccountView, ApiError, BatchAnswer, BatchItem, BlockView, BookView, OrderBatch, OrderStatus,
    SignedOrder, Status, StreamRequest, Submitted,
};
use crate::{Admission, Api};
use utoipa::OpenApi;

/// The API's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// A request body's size at most, in bytes; larger gets 413.
    pub body_bytes: usize,
    /// Book levels a side one request may ask for.
    pub depth: usize,
    /// WebSocket connections open at once.
    pub streams: usize,
    /// Channels one connection may subscribe to.
    pub subscriptions: usize,
    /// A subscriber's message's size at most.
    pub stream_message_bytes: usize,
    /// Levels a side in a `book:` channel's snapshot.
    pub snapshot_levels: usize,
    /// Orders one batch request may hold.
    pub batch_orders: usize,
    /// A batch request's body at most, in bytes.
    pub batch_body_bytes: usize,
    /// Requests one connection may make per second (a token bucket of this size, refilled at
    /// this rate); beyond, 429 `rate_limited`.
    pub requests_per_sec: u32,
    /// How long a stream message may wait to be sent before its slow subscriber is dropped.
    pub stream_send_wait: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            depth: 1_000,
            streams: 1_024,
            subscriptions: 64,
            stream_message_bytes: 4 * 1024,
            snapshot_levels: 10_000,
            batch_orders: 1_000,
            batch_body_bytes: 1024 * 1024,
            requests_per_sec: 10_000,
            stream_send_wait: Duration::from_secs(5),
        }
    }
}

/// Opens the stream (a WebSocket upgrade); then send `{"subscribe": CHANNEL}`.
#[utoipa::path(get, path = "/v1/stream", tag = "stream", operation_id = "open_stream",
    responses(
        (status = 101, description = "Switched to WebSocket. Channels: `blocks`, `trades:M`, `book:M`, `account:N`; every message is `{channel, data}`"),
        (status = 503, description = "`unavailable`: too many streams open", body = ApiError),
    ))]
#[allow(dead_code)]
fn stream_doc() {}

/// The OpenAPI document of the routes, generated from the handlers and the wire types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "agora node API",
        description = "The finalized market of one agora node: orders, books, accounts, blocks, status, streams and metrics."
    ),
    paths(
        post_order,
        get_order,
        get_markets,
        get_book,
        get_account,
        get_block,
        get_status,
        get_metrics,
        stream_doc
    ),
    components(schemas(
        SignedOrder,
        Submitted,
        ApiError,
        OrderStatus,
        Status,
        StreamRequest,
        BookView,
        BlockView,
        AccountView,
        crate::wire::Outcome,
        crate::wire::OpenOrderView,
        crate::wire::CertificateView,
        crate::wire::LevelChange
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document, as pretty JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the document encodes")
}

async fn get_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// The API's routes over `api`.
pub fn router(api: Api) -> Router {
    let streams = Arc::new(AtomicUsize::new(0));
    Router::new()
        .route("/", get(dashboard))
        .route("/v1/orders", post(post_order))
        .route(
            "/v1/orders/batch",
            post(post_batch).layer(DefaultBodyLimit::max(api.limits.batch_body_bytes)),
        )
        .route("/v1/orders/{tx_id}", get(get_order))
        .route("/v1/markets", get(get_markets))
        .route("/v1/markets/{market}/book", get(get_book))
        .route("/v1/accounts/{id}", get(get_account))
        .route("/v1/blocks/{height}", get(get_block))
        .route("/v1/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .route("/v1/openapi.json", get(get_openapi))
        .route(
            "/v1/stream",
            get(move |state: State<Api>, upgrade: WebSocketUpgrade| {
                stream(state, upgrade, Arc::clone(&streams))
            }),
        )
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(middleware::from_fn_with_state(
            Arc::new(RateLimiter::new(api.limits.requests_per_sec)),
            limit_rate,
        ))
        .layer(middleware::from_fn_with_state(api.clone(), count_requests))
        .layer(DefaultBodyLimit::max(api.limits.body_bytes))
        .with_state(api)
}

/// The live page: static HTML and JavaScript, nothing fetched from elsewhere.
const DASHBOARD: &str = include_str!("dashboard.html");

async fn dashboard() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], DASHBOARD).into_response()
}

/// An error answer.
fn fail(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    let body = ApiError { error: error.to_owned(), message: message.into() };
    (status, Json(body)).into_response()
}

/// Counts every request by its route template and status.
async fn count_requests(State(api): State<Api>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    api.metrics.requests.get_or_create(&RouteLabels { route, status }).inc();
    response
}

/// Token buckets, one per connection (its remote address and port).
struct RateLimiter {
    per_sec: f64,
    buckets: Mutex<HashMap<SocketAddr, (f64, Instant)>>,
}

/// Connections whose buckets are kept at most; idle ones go first.
const BUCKETS_MAX: usize = 16_384;
/// A bucket idle this long is full again, and may be forgotten.
const BUCKET_IDLE: Duration = Duration::from_secs(10);

impl RateLimiter {
    fn new(per_sec: u32) -> Self {
        Self { per_sec: f64::from(per_sec.max(1)), buckets: Mutex::default() }
    }

    /// Whether `peer` may make one more request now.
    fn allow(&self, peer: SocketAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= BUCKETS_MAX && !buckets.contains_key(&peer) {
            buckets.retain(|_, (_, last)| now.duration_since(*last) < BUCKET_IDLE);
            if buckets.len() >= BUCKETS_MAX {
                buckets.clear();
            }
        }
        let (tokens, last) = buckets.entry(peer).or_insert((self.per_sec, now));
        let refill = now.duration_since(*last).as_secs_f64() * self.per_sec;
        *tokens = (*tokens + refill).min(self.per_sec);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Refuses a request over its connection's rate with 429 `rate_limited`.
async fn limit_rate(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    if let Some(peer) = peer
        && !limiter.allow(peer)
    {
        let mut response = fail(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests on this connection",
        );
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    next.run(request).await
}

fn refuse(api: &Api, status: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    api.metrics.refused.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    fail(status, reason, message)
}

/// Places a signed order transaction.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = SignedOrder,
    responses(
        (status = 202, description = "In the mempool (or already there)", body = Submitted),
        (status = 200, description = "Final already", body = Submitted),
        (status = 400, description = "`malformed`, `unknown_signer` or `bad_signature`", body = ApiError),
        (status = 409, description = "`stale_nonce`", body = ApiError),
        (status = 413, description = "`too_large`: the body is over the limit", body = ApiError),
        (status = 429, description = "`mempool_full`; see `Retry-After`", body = ApiError),
    ))]
async fn post_order(
    State(api): State<Api>,
    body: Result<Json<SignedOrder>, JsonRejection>,
) -> Response {
    let order = match body {
        Ok(Json(order)) => order,
        Err(rejection) => return body_refused(&api, rejection, api.limits.body_bytes),
    };
    let tx = match precheck(&api, &order) {
        Ok(tx) => tx,
        Err(refusal) => return refusal.answer(&api),
    };
    // The signature last (about 50 µs of one core), off the async workers.
    let (checked, tx) = match tokio::task::spawn_blocking(move || (tx.verify(), tx)).await {
        Ok(done) => done,
        Err(_) => return fail(StatusCode::INTERNAL_SERVER_ERROR, "internal", "verifier failed"),
    };
    let admitted = match checked {
        Ok(()) => admit(&api, tx),
        Err(_) => Err(Refusal::bad_signature()),
    };
    match admitted {
        Ok((status, answer)) => (status, Json(answer)).into_response(),
        Err(refusal) => refusal.answer(&api),
    }
}

/// Places up to [`ApiLimits::batch_orders`] signed orders in one request.
#[utoipa::path(post, path = "/v1/orders/batch", tag = "orders", request_body = OrderBatch,
    responses(
        (status = 200, description = "One result per order, in order: `{tx_id, status}` or `{error, message}`", body = BatchAnswer),
        (status = 400, description = "`malformed`: not a batch, or too many orders", body = ApiError),
        (status = 413, description = "`too_large`: the body is over the batch limit", body = ApiError),
    ))]
async fn post_batch(
    State(api): State<Api>,
    body: Result<Json<OrderBatch>, JsonRejection>,
) -> Response {
    let batch = match body {
        Ok(Json(batch)) => batch,
        Err(rejection) => return body_refused(&api, rejection, api.limits.batch_body_bytes),
    };
    if batch.orders.len() > api.limits.batch_orders {
        let message = format!("at most {} orders a batch", api.limits.batch_orders);
        return refuse(&api, StatusCode::BAD_REQUEST, "malformed", message);
    }
    let checked: Vec<Result<Transaction, Refusal>> =
        batch.orders.iter().map(|order| precheck(&api, order)).collect();
    // The signatures on two blocking threads at once: a batch is the costly part.
    let txs: Vec<Transaction> = checked.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
    let half = txs.len().div_ceil(2);
    let second: Vec<Transaction> = txs[half..].to_vec();
    let mut first = txs;
    first.truncate(half);
    let verify = |txs: Vec<Transaction>| {
        tokio::task::spawn_blocking(move || {
            txs.iter().map(|tx| tx.verify().is_ok()).collect::<Vec<_>>()
        })
    };
    let (a, b) = tokio::join!(verify(first), verify(second));
    let (Ok(a), Ok(b)) = (a, b) else {
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "internal", "verifier failed");
    };
    let mut verdicts = a.into_iter().chain(b);
    let results = checked
        .into_iter()
        .map(|checked| {
            let outcome = checked.and_then(|tx| match verdicts.next() {
                Some(true) => admit(&api, tx).map(|(_, answer)| answer),
                _ => Err(Refusal::bad_signature()),
            });
            match outcome {
                Ok(Submitted { tx_id, status }) => BatchItem {
                    tx_id: Some(tx_id),
                    status: Some(status),
                    error: None,
                    message: None,
                },
                Err(refusal) => {
                    api.metrics
                        .refused
                        .get_or_create(&ReasonLabels { reason: refusal.reason.to_owned() })
                        .inc();
                    BatchItem {
                        tx_id: None,
                        status: None,
                        error: Some(refusal.reason.to_owned()),
                        message: Some(refusal.message),
                    }
                }
            }
        })
        .collect();
    Json(BatchAnswer { results }).into_response()
}

/// Why an order was refused: its status, reason and sentence.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self { status, reason, message: message.into() }
    }

    fn bad_signature() -> Self {
        let message = "the signature does not verify for the sender and the transaction's id";
        Self::new(StatusCode::BAD_REQUEST, "bad_signature", message)
    }

    /// The answer to a single order.
    fn answer(self, api: &Api) -> Response {
        let mut response = refuse(api, self.status, self.reason, self.message);
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// A body that did not parse: 413 over `limit`, else 400 `malformed`.
fn body_refused(api: &Api, rejection: JsonRejection, limit: usize) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return refuse(api, rejection.status(), "too_large", format!("body over {limit} B"));
    }
    refuse(api, StatusCode::BAD_REQUEST, "malformed", rejection.body_text())
}

/// The checks before the signature, cheapest first: the fields, the payload, the signer.
fn precheck(api: &Api, order: &SignedOrder) -> Result<Transaction, Refusal> {
    let tx = order
        .to_transaction()
        .map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, "malformed", why))?;
    if let Err(error) = codec::decode::<OrderAction>(tx.payload()) {
        let message = format!("the payload is not an order action: {error}");
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "malformed", message));
    }
    if api.view.account_of(&tx).is_none() {
        let message = "the sender's key belongs to no account of the genesis";
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "unknown_signer", message));
    }
    Ok(tx)
}

/// The checks after the signature (the nonce window, duplicates), then the mempool.
fn admit(api: &Api, tx: Transaction) -> Result<(StatusCode, Submitted), Refusal> {
    let tx_id = tx.id().to_string();
    match api.view.admit(&tx) {
        Admission::Fresh => {}
        Admission::Duplicate => {
            return Ok((StatusCode::ACCEPTED, Submitted { tx_id, status: "pending".into() }));
        }
        Admission::Final => {
            return Ok((StatusCode::OK, Submitted { tx_id, status: "final".into() }));
        }
        Admission::StaleNonce => {
            let message = "the nonce was used already, or is below the account's window";
            return Err(Refusal::new(StatusCode::CONFLICT, "stale_nonce", message));
        }
        Admission::UnknownSigner => {
            let message = "the sender's key belongs to no account of the genesis";
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "unknown_signer", message));
        }
    }
    let id = tx.id();
    if !api.node.submit(tx) {
        api.view.withdraw(&id);
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "mempool_full",
            "the node is full",
        ));
    }
    Ok((StatusCode::ACCEPTED, Submitted { tx_id, status: "pending".into() }))
}

/// A transaction's status: pending here, or final with its outcome.
#[utoipa::path(get, path = "/v1/orders/{tx_id}", tag = "orders",
    params(("tx_id" = String, Path, description = "The transaction's id, 64 hex digits")),
    responses(
        (status = 200, body = OrderStatus),
        (status = 400, body = ApiError),
        (status = 404, description = "Not submitted here, or not final in the recent window", body = ApiError),
    ))]
async fn get_order(State(api): State<Api>, Path(tx_id): Path<String>) -> Response {
    let Ok(id) = Digest::from_str(&tx_id) else {
        return fail(StatusCode::BAD_REQUEST, "malformed", "a transaction id is 64 hex digits");
    };
    let (status, outcome) = match api.view.outcome(&id) {
        Ok(outcome) => ("final", Some(outcome)),
        Err(true) => ("pending", None),
        Err(false) => {
            let message = "not submitted here, or not final within the recent window";
            return fail(StatusCode::NOT_FOUND, "not_found", message);
        }
    };
    Json(OrderStatus { tx_id, status: status.into(), outcome }).into_response()
}

/// The markets, each with its spec and best bid and ask (`[price, lots]`).
#[utoipa::path(get, path = "/v1/markets", tag = "market",
    responses((status = 200, description = "`{height, markets: [{spec, best_bid, best_ask}]}`", body = Object)))]
async fn get_markets(State(api): State<Api>) -> Response {
    let markets: Vec<_> = api
        .view
        .markets()
        .iter()
        .map(|spec| {
            let top = api.view.book(&spec.market, 1);
            let best = |levels: Option<&Vec<(u64, u64)>>| levels.and_then(|l| l.first().copied());
            json!({
                "spec": spec,
                "best_bid": best(top.as_ref().map(|b| &b.bids)),
                "best_ask": best(top.as_ref().map(|b| &b.asks)),
            })
        })
        .collect();
    Json(json!({ "height": api.view.height().0, "markets": markets })).into_response()
}

/// `?depth=N`.
#[derive(Debug, Deserialize)]
struct DepthQuery {
    depth: Option<usize>,
}

/// A market's book: the top levels of each side.
#[utoipa::path(get, path = "/v1/markets/{market}/book", tag = "market",
    params(
        ("market" = String, Path, description = "For example `ETH-USD`"),
        ("depth" = Option<usize>, Query, description = "Levels a side, default 20, at most 1,000"),
    ),
    responses((status = 200, body = BookView), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn get_book(
    State(api): State<Api>,
    Path(market): Path<String>,
    query: Result<Query<DepthQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(DepthQuery { depth })) = query else {
        return fail(StatusCode::BAD_REQUEST, "malformed", "depth is a whole number");
    };
    let depth = depth.unwrap_or(20);
    if depth > api.limits.depth {
        let message = format!("depth is at most {}", api.limits.depth);
        return fail(StatusCode::BAD_REQUEST, "malformed", message);
    }
    match api.view.book(&market, depth) {
        Some(book) => Json(book).into_response(),
        None => fail(StatusCode::NOT_FOUND, "not_found", format!("no market {market}")),
    }
}

/// An account: balances, holds, open orders and nonce floor.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "market",
    params(("id" = u64, Path, description = "The account number")),
    responses(
        (status = 200, description = "`{account, height, state}`, the state an AccountView", body = Object),
        (status = 400, body = ApiError),
        (status = 404, body = ApiError),
    ))]
async fn get_account(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return fail(StatusCode::BAD_REQUEST, "malformed", "an account id is a whole number");
    };
    match api.view.account(AccountId(id)) {
        Some(account) => {
            let height = api.view.height().0;
            Json(json!({ "account": id, "height": height, "state": account })).into_response()
        }
        None => fail(StatusCode::NOT_FOUND, "not_found", format!("no account {id}")),
    }
}

/// A recent finalized block with its certificates.
#[utoipa::path(get, path = "/v1/blocks/{height}", tag = "chain",
    params(("height" = String, Path, description = "A height, or `latest`")),
    responses((status = 200, body = BlockView), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
async fn get_block(State(api): State<Api>, Path(height): Path<String>) -> Response {
    let height = match height.as_str() {
        "latest" => api.view.height().0,
        text => match text.parse::<u64>() {
            Ok(height) => height,
            Err(_) => {
                let message = "a height is a whole number, or `latest`";
                return fail(StatusCode::BAD_REQUEST, "malformed", message);
            }
        },
    };
    if let Some(block) = api.view.block(height) {
        return Json(block).into_response();
    }
    let (tip, _) = api.view.height();
    let message = match api.view.oldest_block() {
        _ if height > tip => format!("height {height} is not final yet (the tip is {tip})"),
        Some(oldest) => {
            format!("height {height} is older than the window, which starts at {oldest}")
        }
        None => format!("height {height} was applied before this node started serving"),
    };
    fail(StatusCode::NOT_FOUND, "not_found", message)
}

/// The node's status.
#[utoipa::path(get, path = "/v1/status", tag = "chain", responses((status = 200, body = Status)))]
async fn get_status(State(api): State<Api>) -> Response {
    let info = api.node.info();
    let (height, digest) = api.view.height();
    let (p50, p99, samples) = api.view.recent_latency();
    Json(Status {
        node: info.id,
        protocol: info.protocol,
        members: info.members,
        height,
        state_digest: digest.to_string(),
        connected_peers: info.connected,
        pending: api.view.pending(),
        finality_ms_p50: p50,
        finality_ms_p99: p99,
        finality_samples: samples,
        messages_sent: info.messages_sent,
        bytes_sent: info.bytes_sent,
    })
    .into_response()
}

/// Prometheus metrics, as OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn get_metrics(State(api): State<Api>) -> Response {
    let text = api.metrics.render(&api.node.info(), api.view.pending());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn stream(
    State(api): State<Api>,
    upgrade: WebSocketUpgrade,
    open: Arc<AtomicUsize>,
) -> Response {
    if open.fetch_add(1, Ordering::SeqCst) >= api.limits.streams {
        open.fetch_sub(1, Ordering::SeqCst);
        return fail(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "too many streams open");
    }
    let size = api.limits.stream_message_bytes;
    upgrade.max_message_size(size).max_frame_size(size).on_upgrade(move |socket| async move {
        api.metrics.subscribers.inc();
        serve_stream(&api, socket).await;
        api.metrics.subscribers.dec();
        open.fetch_sub(1, Ordering::SeqCst);
    })
}

/// One subscriber's channels; for a `book:` channel, the update its snapshot included. The
/// view is told of each, so that it encodes only what someone listens to.
struct Subscriptions<'a> {
    view: &'a crate::MarketView,
    channels: std::collections::BTreeMap<String, u64>,
}

impl Subscriptions<'_> {
    fn insert(&mut self, channel: String, seen: u64) {
        if !self.channels.contains_key(&channel) {
            self.view.listen(&channel);
        }
        self.channels.insert(channel, seen);
    }

    fn remove(&mut self, channel: &str) {
        if self.channels.remove(channel).is_some() {
            self.view.unlisten(channel);
        }
    }
}

impl Drop for Subscriptions<'_> {
    fn drop(&mut self) {
        for channel in self.channels.keys() {
            self.view.unlisten(channel);
        }
    }
}

/// Serves one WebSocket until it closes: its requests in, its channels' messages out.
async fn serve_stream(api: &Api, mut socket: WebSocket) {
    let mut hub = api.view.subscribe();
    let mut subs = Subscriptions { view: &api.view, channels: Default::default() };
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { return };
                let reply = match message {
                    Message::Text(text) => request(api, &mut subs, text.as_str()),
                    Message::Close(_) => return,
                    _ => continue,
                };
                for text in reply {
                    if !send(api, &mut socket, text).await {
                        return;
                    }
                }
            }
            published = hub.recv() => {
                let text = match published {
                    Ok(p) => match subs.channels.get(&*p.channel) {
                        // A book update its snapshot already holds is skipped.
                        Some(seen) if p.seq != 0 && p.seq <= *seen => continue,
                        Some(_) => p.text.to_string(),
                        None => continue,
                    },
                    // Too slow to keep up: told, then dropped (it reconnects and starts over).
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let text = json!({ "error": "lagged", "missed": missed }).to_string();
                        let _ = send(api, &mut socket, text).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !send(api, &mut socket, text).await {
                    return;
                }
            }
        }
    }
}

/// Sends one message, waiting at most [`ApiLimits::stream_send_wait`]; `false` if the
/// subscriber is gone or too slow.
async fn send(api: &Api, socket: &mut WebSocket, text: String) -> bool {
    let sent =
        tokio::time::timeout(api.limits.stream_send_wait, socket.send(Message::Text(text.into())));
    matches!(sent.await, Ok(Ok(())))
}

/// Answers one subscriber request: the replies to send, in order.
fn request(api: &Api, subs: &mut Subscriptions<'_>, text: &str) -> Vec<String> {
    let error = |error: &str, message: String| {
        vec![json!({ "error": error, "message": message }).to_string()]
    };
    let request: StreamRequest = match serde_json::from_str(text) {
        Ok(request) => request,
        Err(e) => return error("malformed", format!("expected {{\"subscribe\": CHANNEL}}: {e}")),
    };
    match request {
        StreamRequest::Unsubscribe(channel) => {
            subs.remove(&channel);
            vec![json!({ "unsubscribed": channel }).to_string()]
        }
        StreamRequest::Subscribe(channel) => {
            if !api.view.is_channel(&channel) {
                return error("unknown_channel", format!("no channel {channel}"));
            }
            if !subs.channels.contains_key(&channel)
                && subs.channels.len() >= api.limits.subscriptions
            {
                let limit = api.limits.subscriptions;
                return error("too_many_subscriptions", format!("at most {limit} channels"));
            }
            let mut replies = vec![json!({ "subscribed": channel }).to_string()];
            let mut seen = 0;
            if let Some(market) = channel.strip_prefix("book:")
                && let Some(book) = api.view.book(market, api.limits.snapshot_levels)
            {
                seen = book.seq;
                let snapshot = json!({
                    "type": "snapshot",
                    "height": book.height,
                    "seq": book.seq,
                    "bids": book.bids,
                    "asks": book.asks,
                });
                let tagged = Tagged { channel: &channel, data: &snapshot };
                replies.push(serde_json::to_string(&tagged).unwrap_or_default());
            }
            subs.insert(channel, seen);
            replies
        }
    }
}

/// The API running on a thread and runtime of its own, beside a node that is not async.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ApiServer {
    /// Serves `api` on `listener` (bound beforehand, so that a caller can bind port 0).
    pub fn start(listener: std::net::TcpListener, api: Api) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .thread_name("agora-api")
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new().name("agora-api".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::error!(%error, "the API cannot listen");
                        return;
                    }
                };
                // Streams never end by themselves: stopping drops every connection.
                tokio::select! {
                    served = axum::serve(
                        listener,
                        router(api).into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .into_future() => {
                        if let Err(error) = served {
                            tracing::error!(%error, "the API stopped");
                        }
                    }
                    _ = stopped => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
        Ok(Self { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: every connection is dropped, streams included.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
