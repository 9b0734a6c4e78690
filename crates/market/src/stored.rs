//! What a replica's blocks are applied to, as its block store records it: enough for a tool
//! that replays the store (`agora replay`) to build the same application.

use agora_types::codec;
use serde::{Deserialize, Serialize};

use crate::{ExecutionOrder, MarketGenesis};

/// What the blocks of a store are applied to, as the store records it
/// (agora-store's `BlockStore::set_application`): enough to build the same application again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StoredApplication {
    /// [`TxLog`](agora_consensus::TxLog): opaque transactions folded into a digest.
    TxLog {
        /// Whether it refuses transactions whose signature fails.
        verify_signatures: bool,
    },
    /// The replicated market.
    Market {
        /// Its accounts and markets.
        genesis: MarketGenesis,
        /// How it orders a block's transactions.
        order: ExecutionOrder,
    },
}

/// The description's largest encoding: a genesis of many accounts fits.
const DESCRIPTION_BYTES_MAX: usize = 64 * 1024 * 1024;
/// What every description starts with, so that another program's bytes are told apart.
const DESCRIPTION_MAGIC: &[u8] = b"agora-application/v1\n";

impl StoredApplication {
    /// Its encoding in the store.
    pub fn encode(&self) -> Vec<u8> {
        let body = codec::encode_with_limit(self, DESCRIPTION_BYTES_MAX)
            .expect("an application description encodes");
        [DESCRIPTION_MAGIC, &body].concat()
    }

    /// The application it describes, at genesis (a driver restores a snapshot into it).
    pub fn at_genesis(&self) -> Box<dyn agora_consensus::Application + Send> {
        self.at_genesis_observed(None)
    }

    /// [`StoredApplication::at_genesis`], with a market reporting to `observer` (ignored by an
    /// application that is not the market).
    pub fn at_genesis_observed(
        &self,
        observer: Option<Box<dyn crate::MarketObserver>>,
    ) -> Box<dyn agora_consensus::Application + Send> {
        match self {
            StoredApplication::TxLog { verify_signatures } => {
                Box::new(agora_consensus::TxLog::new(*verify_signatures))
            }
            StoredApplication::Market { genesis, order } => {
                let app = crate::MarketApp::new(genesis).with_order(*order);
                Box::new(match observer {
                    Some(observer) => app.with_observer(observer),
                    None => app,
                })
            }
        }
    }

    /// The description `bytes` encode, if they are one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let body = bytes.strip_prefix(DESCRIPTION_MAGIC)?;
        codec::decode_with_limit(body, DESCRIPTION_BYTES_MAX).ok()
    }
}
