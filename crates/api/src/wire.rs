//! The JSON the API speaks: requests, answers and errors. `agora-client` uses the same types.
//!
//! Bytes travel as lowercase hex: a transaction's `sender` (33-byte compressed key), its
//! `payload` (the postcard encoding of an [`agora_market::OrderAction`]) and its `signature`
//! (64 bytes, `r ‖ s`); ids and digests are 32-byte hex.

use std::collections::BTreeMap;

use agora_crypto::{PublicKeyBytes, Signature};
use agora_market::Refusal;
use agora_orderbook::{Balance, Event, Side};
use agora_types::{TX_PAYLOAD_BYTES_MAX, Transaction};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/orders`: a signed order transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedOrder {
    /// The signer's compressed public key, hex.
    #[schema(value_type = String, example = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5")]
    pub sender: PublicKeyBytes,
    /// The signer's nonce.
    pub nonce: u64,
    /// The encoded order action, hex.
    pub payload: String,
    /// The signature over the transaction's id, hex (64 bytes, `r ‖ s`, low `s`).
    #[schema(value_type = String)]
    pub signature: Signature,
}

impl SignedOrder {
    /// The JSON form of `tx`.
    pub fn from_transaction(tx: &Transaction) -> Self {
        Self {
            sender: *tx.sender(),
            nonce: tx.nonce(),
            payload: hex::encode(tx.payload()),
            signature: *tx.signature(),
        }
    }

    /// The transaction, or why these fields are not one.
    pub fn to_transaction(&self) -> Result<Transaction, String> {
        if self.payload.len() > 2 * TX_PAYLOAD_BYTES_MAX {
            return Err(format!("payload over {TX_PAYLOAD_BYTES_MAX} bytes"));
        }
        let payload = hex::decode(&self.payload).map_err(|e| format!("payload: {e}"))?;
        Transaction::from_parts(self.sender, self.nonce, Bytes::from(payload), self.signature)
            .map_err(|e| e.to_string())
    }
}

/// `POST /v1/orders/batch`: signed orders, each checked and admitted on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBatch {
    /// The orders, in the order they are admitted.
    pub orders: Vec<SignedOrder>,
}

/// The answer to a batch: one result per order, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchAnswer {
    /// The results.
    pub results: Vec<BatchItem>,
}

/// One order's result in a batch: `tx_id` and `status` when admitted (or known), `error` and
/// `message` when refused (the reasons of `POST /v1/orders`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// The transaction's id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<String>,
    /// `pending` or `final`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What went wrong, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer to an accepted `POST /v1/orders` (202), or to one already known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The transaction's id, hex.
    pub tx_id: String,
    /// `pending` (in the mempool) or `final`.
    pub status: String,
}

/// Every error's body: a machine-readable reason and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// `malformed`, `bad_signature`, `unknown_signer`, `stale_nonce`, `mempool_full`,
    /// `not_found`, `too_large`, `unavailable`, …
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// `GET /v1/orders/{tx_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderStatus {
    /// The transaction's id, hex.
    pub tx_id: String,
    /// `pending` or `final`.
    pub status: String,
    /// For a final one: its height, whether it was executed or refused, why, and its events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// The node's member id.
    pub node: u16,
    /// Its protocol.
    pub protocol: String,
    /// The committee's size.
    pub members: usize,
    /// The height of the last block its market applied.
    pub height: u64,
    /// The state digest there, hex.
    pub state_digest: String,
    /// The peers linked now.
    pub connected_peers: Vec<u16>,
    /// Transactions submitted here, not final yet.
    pub pending: usize,
    /// Finality latency of the recent transactions submitted here, ms: p50.
    pub finality_ms_p50: Option<f64>,
    /// p99.
    pub finality_ms_p99: Option<f64>,
    /// How many recent transactions those percentiles cover.
    pub finality_samples: usize,
    /// Consensus messages sent to peers since the node started.
    pub messages_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
}

/// A subscriber's request on `GET /v1/stream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StreamRequest {
    /// Start receiving a channel.
    Subscribe(String),
    /// Stop.
    Unsubscribe(String),
}

/// A block as the API serves it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    /// Its height.
    pub height: u64,
    /// Its digest, hex.
    pub digest: String,
    /// Its parent's digest, hex.
    pub parent: String,
    /// The round (or view) it was proposed in.
    pub round: u64,
    /// Its proposer.
    pub proposer: u16,
    /// The state digest after it, hex.
    pub state_digest: String,
    /// Transactions executed and refused.
    pub executed: usize,
    /// Transactions refused before the book.
    pub refused: usize,
    /// Its transactions' ids, hex, in block order.
    pub txs: Vec<String>,
    /// The certificates that prove it final, as its engine gave them (empty when the node
    /// applied it from its own store at start, or the engine had none at hand).
    #[serde(default)]
    pub certificates: Vec<CertificateView>,
}

/// A certificate: a quorum's signatures over one statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    /// The protocol step voted (`Notarize`, `Prepare`, `Commit`, `Finalize`, …).
    pub phase: String,
    /// Its round or view.
    pub round: u64,
    /// Its height or sequence number.
    pub height: u64,
    /// The value voted for, hex: a block digest, or a state digest for a checkpoint.
    pub value: String,
    /// The members who signed, in increasing order.
    pub signers: Vec<u16>,
}

/// What became of a final transaction.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Outcome {
    /// The height of its block.
    pub height: u64,
    /// `executed` (it reached the book, which may still have rejected it: see its events) or
    /// `refused` (before the book).
    pub status: String,
    /// Why it was refused, if it was: `bad_signature`, `unknown_signer`, `malformed` or
    /// `stale_nonce`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<Refusal>,
    /// The book's events of it: accepted, trades, cancels, or the book's reject; each an object
    /// tagged by `event`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Event>,
}

/// One account as the API serves it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// Balances by asset: `{"available": N, "held": N}`.
    #[schema(value_type = Object)]
    pub balances: BTreeMap<String, Balance>,
    /// Open orders, by market and client id.
    pub open_orders: Vec<OpenOrderView>,
    /// The lowest nonce the account could still use.
    pub nonce_floor: u64,
}

/// An open order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpenOrderView {
    /// Market.
    pub market: String,
    /// Client id.
    pub id: u64,
    /// `buy` or `sell`.
    #[schema(value_type = String)]
    pub side: Side,
    /// Price in ticks.
    pub price: u64,
    /// Open lots.
    pub qty: u64,
    /// What is held for it.
    pub held: u64,
}

/// A book's top levels, best first, as served and as a stream's snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BookView {
    /// The market.
    pub market: String,
    /// The height it is at.
    pub height: u64,
    /// The number of the last update of its `book:` channel it includes.
    pub seq: u64,
    /// Bids, best (highest) first: `[price, lots]`.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub bids: Vec<(u64, u64)>,
    /// Asks, best (lowest) first.
    #[schema(value_type = Vec<Vec<u64>>)]
    pub asks: Vec<(u64, u64)>,
}

/// One level's new size in a book update (0: the level is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LevelChange {
    /// `buy` or `sell`.
    #[schema(value_type = String)]
    pub side: Side,
    /// Price in ticks.
    pub price: u64,
    /// Lots now resting there.
    pub qty: u64,
}
