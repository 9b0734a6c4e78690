//! `agora replay` over the stores a simulated run writes: every stored digest reproduced, from
//! genesis and from a snapshot, and a store whose digest was changed named at that height.

use agora_consensus::{Application, TxLog};
use agora_crypto::DirectCheck;
use agora_lab::replay::{self, ReplayOptions, StoredApplication};
use agora_lab::simulate::{self, ProtocolChoice, SimulateError, SimulateOptions, WorkloadChoice};
use agora_store::{BlockStore, FinalizedBlock, MemBlockStore, RedbBlockStore, SnapshotPolicy};
use agora_types::bytes::Bytes;
use agora_types::{Batch, Block, Committee, Digest, Height, NodeId, Phase, Round, Transaction};

fn replay_of(
    store: std::path::PathBuf,
    from: u64,
) -> Result<replay::ReplaySummary, replay::ReplayError> {
    let mut out = Vec::new();
    replay::replay(&ReplayOptions { store, from, json: true }, &mut out)
}

#[test]
fn every_replica_of_a_run_with_a_recovery_replays_to_its_stored_digests() {
    for protocol in [ProtocolChoice::Streamlet, ProtocolChoice::Pbft] {
        let dir = tempfile::tempdir().unwrap();
        let options = SimulateOptions {
            protocol,
            workload: WorkloadChoice::Market,
            duration_ms: 6_000.0,
            tx_rate: 300.0,
            crashes: vec![(NodeId(2), 2_500.0)],
            restarts: vec![(NodeId(2), 3_500.0)],
            snapshot_every: 16,
            store_dir: Some(dir.path().to_path_buf()),
            ..SimulateOptions::default()
        };
        let run = simulate::run(&options).unwrap();
        assert!(run.summary.safety_ok, "{}: {:?}", protocol.name(), run.summary.violations);
        assert_eq!(run.report.nodes_detail[2].app_recoveries, 1);
        for detail in &run.report.nodes_detail {
            let store = dir.path().join(format!("node-{}", detail.node.0));
            let from_genesis = replay_of(store.clone(), 0).unwrap();
            assert_eq!(from_genesis.snapshot, None);
            assert_eq!(from_genesis.height, detail.finalized_height, "{}", protocol.name());
            assert_eq!(from_genesis.blocks, detail.finalized_height);
            assert!(from_genesis.trades > 0);
            check_proofs(&store.join(replay::BLOCKS_FILE), options.seed, protocol);
            let from_snapshot = replay_of(store, detail.finalized_height).unwrap();
            let snapshot = from_snapshot.snapshot.expect("a snapshot every 16 blocks");
            assert_eq!(snapshot, detail.finalized_height / 16 * 16);
            assert_eq!(from_snapshot.height, detail.finalized_height);
        }
    }
}

/// Every block the store holds carries a certificate from a quorum of the run's committee for
/// that block (PBFT: the COMMIT votes of its sequence number; Streamlet: its notarization),
/// except, under PBFT, a block whose votes a restart or a state transfer did not bring along.
fn check_proofs(path: &std::path::Path, seed: u64, protocol: ProtocolChoice) {
    let store = RedbBlockStore::open(path, SnapshotPolicy::default()).unwrap();
    let (committee, _) = Committee::deterministic(seed, 4).unwrap();
    let quorum = committee.byzantine_quorum();
    let mut unproven = 0;
    for block in store.blocks(Height(1), usize::MAX).unwrap() {
        let Some(certificate) = block.proof.first() else {
            unproven += 1;
            continue;
        };
        assert_eq!(block.proof.len(), 1);
        certificate.verify(&committee, quorum).unwrap();
        let statement = certificate.statement();
        if statement.phase == Phase::Checkpoint {
            // PBFT's state transfer: the stable checkpoint the block's digest chains into.
            assert_eq!(protocol, ProtocolChoice::Pbft);
            assert!(statement.height >= block.height(), "{}", path.display());
        } else {
            assert_eq!(statement.height, block.height(), "{}", path.display());
            assert_eq!(statement.value, block.block.digest(), "{}", path.display());
        }
    }
    // A restarted engine finalizes or executes again what the ledger holds, without votes;
    // those heights were stored before, with theirs.
    assert_eq!(unproven, 0, "blocks without a proof in {}", path.display());
}

#[test]
fn a_stored_digest_that_differs_is_named_by_its_height() {
    let (_, keys) = Committee::deterministic(1, 4).unwrap();
    let mut log = TxLog::new(true);
    let blocks: Vec<FinalizedBlock> = (1..=8u64)
        .map(|height| {
            let tx = Transaction::new_signed(&keys[0], height, Bytes::from_static(b"t")).unwrap();
            let batch = Batch::new(vec![tx]).unwrap();
            let block =
                Block::new(Digest::ZERO, Round(height), Height(height), NodeId(0), 0, batch);
            let mut state_digest = log.apply(&block, &mut DirectCheck).state_digest;
            if height == 6 {
                state_digest = Digest::from_bytes([6; 32]);
            }
            FinalizedBlock { block, proof: Vec::new(), state_digest }
        })
        .collect();
    let mut store = MemBlockStore::new(SnapshotPolicy::default());
    store.append(&blocks).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let application = StoredApplication::TxLog { verify_signatures: true };
    replay::write_stores(dir.path(), &[(NodeId(0), store.clone())], &application).unwrap();
    let error = replay_of(dir.path().join("node-0"), 0).unwrap_err();
    assert_eq!(error.diverged_at(), Some(Height(6)), "{error}");
    assert!(error.to_string().contains("height 6"), "{error}");
    // A second write into the same directory is refused, not merged.
    let again = replay::write_stores(dir.path(), &[(NodeId(0), store)], &application);
    assert!(again.is_err());
}

#[test]
fn a_store_dir_that_already_holds_stores_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let options = SimulateOptions {
        duration_ms: 300.0,
        store_dir: Some(dir.path().to_path_buf()),
        ..SimulateOptions::default()
    };
    simulate::run(&options).unwrap();
    let refused = simulate::run(&options).err().expect("the second run is refused");
    assert!(matches!(refused, SimulateError::Store(_)), "{refused}");
    assert!(refused.to_string().contains("node-0"), "{refused}");
    // What the first run wrote still replays.
    let summary = replay_of(dir.path().join("node-1"), 0).unwrap();
    assert_eq!(summary.application, "txlog");
}

#[test]
fn a_directory_without_a_store_and_a_file_that_is_not_one_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let none = replay_of(dir.path().to_path_buf(), 0).unwrap_err();
    assert!(none.to_string().contains(&dir.path().display().to_string()), "{none}");
    std::fs::write(dir.path().join(replay::BLOCKS_FILE), b"not a database").unwrap();
    let foreign = replay_of(dir.path().to_path_buf(), 0).unwrap_err();
    assert!(foreign.to_string().contains("blocks.redb"), "{foreign}");
}
