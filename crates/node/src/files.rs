//! A node's files: its member key, the genesis every node shares, and its configuration.
//!
//! - **Key file** (TOML, mode 0600): `secret_key`, 64 hex digits. [`write_key`] creates it
//!   with a fresh key and never overwrites; [`read_key`] refuses a file that others may read.
//! - **Genesis** (JSON): the committee's public keys in member order, and the application every
//!   replica applies blocks to ([`GenesisFile`]).
//! - **Node configuration** (TOML, [`NodeFile`]): the node's id, key file, genesis and store;
//!   where it listens for peers, for clients and (`[api] listen`) for the HTTP API; each peer's id, address and public key; the
//!   protocol and its parameters. Relative paths are relative to the configuration's directory.
//!
//! Every error names the file; a configuration error also names the line and the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agora_crypto::{PublicKey, SecretKey};
use agora_engines::EngineConfig;
use agora_hotstuff::{ChainRule, HotStuffConfig};
use agora_market::StoredApplication;
use agora_net::NetLimits;
use agora_pbft::PbftConfig;
use agora_runtime::ReplicaOptions;
use agora_simplex::SimplexConfig;
use agora_streamlet::StreamletConfig;
use agora_types::{Committee, NodeId};
use serde::{Deserialize, Serialize};

use crate::NodeConfig;

/// A file that could not be used, and why (one line, naming the file).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it (for a configuration: the line and the field).
    pub reason: String,
}

fn fail(path: &Path, reason: impl Into<String>) -> FileError {
    FileError { path: path.to_path_buf(), reason: reason.into() }
}

fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| fail(path, e.to_string()))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    secret_key: String,
}

/// Writes a fresh member key to `path` with mode 0600, refusing to overwrite a file; returns
/// its public key.
pub fn write_key(path: &Path) -> Result<PublicKey, FileError> {
    let key = loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| fail(path, format!("no randomness: {e}")))?;
        // Almost every 32 bytes are a valid scalar; draw again in the rare other case.
        if let Ok(key) = SecretKey::from_bytes(&bytes) {
            break key;
        }
    };
    let text = toml::to_string(&KeyFile { secret_key: hex::encode(key.to_bytes()) })
        .map_err(|e| fail(path, e.to_string()))?;
    let text = format!("# agora member key: keep it secret (mode 0600)\n{text}");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| fail(path, e.to_string()))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| fail(path, e.to_string()))?;
    file.sync_all().map_err(|e| fail(path, e.to_string()))?;
    Ok(*key.public_key())
}

/// Reads a member key, refusing a file that its group or others may read or write.
pub fn read_key(path: &Path) -> Result<SecretKey, FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(path).map_err(|e| fail(path, e.to_string()))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(fail(
                path,
                format!("the key file is open to others (mode {:o}): chmod 600 it", mode & 0o777),
            ));
        }
    }
    let text = read(path)?;
    let file: KeyFile = toml::from_str(&text).map_err(|e| fail(path, toml_reason(&text, &e)))?;
    let bytes: [u8; 32] = hex::decode(file.secret_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| fail(path, "secret_key: not 64 hex digits"))?;
    SecretKey::from_bytes(&bytes).map_err(|e| fail(path, format!("secret_key: {e}")))
}

/// The genesis every node of a committee shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// The members' public keys, in member order (member i is `committee[i]`).
    pub committee: Vec<PublicKey>,
    /// What every replica applies the blocks to.
    pub application: StoredApplication,
}

impl GenesisFile {
    /// Reads a genesis file.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let text = read(path)?;
        serde_json::from_str(&text).map_err(|e| fail(path, e.to_string()))
    }

    /// Writes it to `path`.
    pub fn write(&self, path: &Path) -> Result<(), FileError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| fail(path, e.to_string()))?;
        std::fs::write(path, text).map_err(|e| fail(path, e.to_string()))
    }

    /// The committee it names.
    pub fn committee(&self) -> Result<Committee, agora_types::CommitteeError> {
        Committee::new(self.committee.clone())
    }
}

/// A node's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Who the node is and where its files are.
    pub node: NodeSection,
    /// Where it listens for its peers.
    pub net: NetSection,
    /// Where it listens for clients.
    pub client: ClientSection,
    /// Where it serves its HTTP and WebSocket API and its metrics; none without this section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSection>,
    /// The protocol and its parameters.
    pub consensus: ConsensusSection,
    /// Its peers.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Its member id.
    pub id: u16,
    /// Its key file.
    pub key_file: PathBuf,
    /// The genesis file.
    pub genesis: PathBuf,
    /// The directory of its journal and block store.
    pub store: PathBuf,
}

/// `[net]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSection {
    /// Where it listens for peers.
    pub listen: SocketAddr,
}

/// `[client]`: the local submission port (until the HTTP API replaces it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// Where it listens for clients; 127.0.0.1 unless you mean otherwise.
    pub listen: SocketAddr,
}

/// `[api]`: the HTTP and WebSocket API, the live page and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Where it listens; 127.0.0.1 unless you mean otherwise.
    pub listen: SocketAddr,
}

/// `[consensus]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSection {
    /// `pbft`, `streamlet` or `simplex`.
    pub protocol: String,
    /// PBFT's view timeout T, in milliseconds.
    #[serde(default)]
    pub view_timeout_ms: Option<u64>,
    /// Δ, in milliseconds: Streamlet's epoch is 2Δ, Simplex's iteration timer 3Δ (and an idle
    /// Simplex leader proposes an empty block Δ into its iteration).
    #[serde(default)]
    pub delta_ms: Option<u64>,
    /// Transactions per block at most.
    #[serde(default)]
    pub batch_txs_max: Option<usize>,
}

/// `[[peers]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// Its member id.
    pub id: u16,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its public key, which must be the genesis committee's for that id.
    pub public_key: PublicKey,
}

/// "line L, field `F`: message" for a TOML error: the line from the error's span, the field
/// from that line's key.
fn toml_reason(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().to_string();
    let Some(span) = error.span() else { return message };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
    let field = line_text.split_once('=').map(|(k, _)| k.trim()).filter(|k| !k.is_empty());
    match field {
        Some(field) => format!("line {line}, field `{field}`: {message}"),
        None => format!("line {line} (`{line_text}`): {message}"),
    }
}

impl NodeFile {
    /// Reads a configuration file.
    pub fn read(path: &Path) -> Result<Self, FileError> {
        let text = read(path)?;
        toml::from_str(&text).map_err(|e| fail(path, toml_reason(&text, &e)))
    }

    /// Writes it to `path`.
    pub fn write(&self, path: &Path) -> Result<(), FileError> {
        let text = toml::to_string(self).map_err(|e| fail(path, e.to_string()))?;
        std::fs::write(path, text).map_err(|e| fail(path, e.to_string()))
    }

    /// The engine configuration it names.
    pub fn engine(&self) -> Result<EngineConfig, String> {
        let c = &self.consensus;
        let ms = 1_000_000;
        let engine = match c.protocol.as_str() {
            "pbft" => {
                let mut pbft =
                    PbftConfig::new(c.view_timeout_ms.unwrap_or(1_000).saturating_mul(ms));
                if let Some(txs) = c.batch_txs_max {
                    pbft.batch.txs_max = txs;
                }
                EngineConfig::Pbft(pbft)
            }
            "streamlet" => {
                let mut streamlet =
                    StreamletConfig::new(c.delta_ms.unwrap_or(50).saturating_mul(ms));
                if let Some(txs) = c.batch_txs_max {
                    streamlet.batch.txs_max = txs;
                }
                EngineConfig::Streamlet(streamlet)
            }
            "simplex" => {
                let mut simplex = SimplexConfig::new(c.delta_ms.unwrap_or(50).saturating_mul(ms));
                simplex.empty_block_after_ns = simplex.delta_ns;
                if let Some(txs) = c.batch_txs_max {
                    simplex.batch.txs_max = txs;
                }
                EngineConfig::Simplex(simplex)
            }
            name @ ("hotstuff" | "hotstuff-2") => {
                let chain = if name == "hotstuff" { ChainRule::Three } else { ChainRule::Two };
                let mut hotstuff = HotStuffConfig::new(c.delta_ms.unwrap_or(50).saturating_mul(ms))
                    .with_chain(chain);
                hotstuff.empty_block_after_ns = hotstuff.delta_ns;
                if let Some(txs) = c.batch_txs_max {
                    hotstuff.batch.txs_max = txs;
                }
                EngineConfig::HotStuff(hotstuff)
            }
            other => {
                return Err(format!(
                    "protocol `{other}`: expected `pbft`, `streamlet`, `simplex`, `hotstuff` \
                     (three-chain) or `hotstuff-2` (two-chain)"
                ));
            }
        };
        engine.validate().map_err(|e| e.to_string())?;
        Ok(engine)
    }

    /// The node configuration, with the key and the genesis read (paths relative to the
    /// directory of `path`, the file this was read from) and the peers checked against the
    /// genesis committee.
    pub fn load(&self, path: &Path) -> Result<(NodeConfig, SocketAddr), FileError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let key = read_key(&resolve(&self.node.key_file))?;
        let genesis_path = resolve(&self.node.genesis);
        let genesis = GenesisFile::read(&genesis_path)?;
        let committee = genesis.committee().map_err(|e| fail(&genesis_path, e.to_string()))?;
        let me = NodeId(self.node.id);
        if committee.key(me) != Some(key.public_key()) {
            return Err(fail(
                path,
                format!("the key file's key is not member {}'s in the genesis committee", me.0),
            ));
        }
        let mut peers = BTreeMap::new();
        for peer in &self.peers {
            let id = NodeId(peer.id);
            if id == me || committee.key(id) != Some(&peer.public_key) {
                return Err(fail(
                    path,
                    format!(
                        "peer {}: not another member of the genesis committee with that key",
                        peer.id
                    ),
                ));
            }
            peers.insert(id, peer.address);
        }
        let engine = self.engine().map_err(|e| fail(path, format!("[consensus] {e}")))?;
        let mut replica = ReplicaOptions::new(committee.n());
        // As in the bench: Streamlet's and Simplex's engines would wait while their thread
        // applies a block; PBFT batches better when execution holds its primary back.
        replica.apply_thread = !matches!(engine, EngineConfig::Pbft(_));
        let config = NodeConfig {
            me,
            key,
            committee,
            peers,
            store: resolve(&self.node.store),
            engine,
            application: genesis.application,
            replica,
            net: NetLimits::default(),
        };
        Ok((config, self.client.listen))
    }
}

/// The `protocol` a node's configuration names for HotStuff with the commit rule `chain`:
/// `hotstuff` (three-chain) or `hotstuff-2` (two-chain).
pub fn hotstuff_protocol_name(chain: ChainRule) -> &'static str {
    match chain {
        ChainRule::Three => "hotstuff",
        ChainRule::Two => "hotstuff-2",
    }
}
