//! Transactions submitted to a node reach the next leaders in batches, and a backlog is
//! re-forwarded only once it has waited, not every epoch.

use agora_consensus::{Action, Context, InMemoryMempool, MempoolLimits, Protocol};
use agora_crypto::DirectCheck;
use agora_streamlet::{LeaderRule, Streamlet, StreamletConfig, StreamletMessage, StreamletTimer};
use agora_types::{Committee, Epoch, NodeId, SecretKey, Transaction};
use bytes::Bytes;

const DELTA: u64 = 50_000_000;

struct Node {
    node: Streamlet,
    mempool: InMemoryMempool,
    actions: Vec<Action<StreamletMessage, StreamletTimer>>,
}

impl Node {
    /// Node 3 of 4 under round robin: epoch e is led by node e mod 4.
    fn new(forward_batch_max: usize) -> Self {
        let (committee, keys) = Committee::deterministic(1, 4).unwrap();
        let mut config = StreamletConfig::new(DELTA);
        config.leader = LeaderRule::RoundRobin;
        config.forward_batch_max = forward_batch_max;
        let node = Streamlet::new(config, committee, NodeId(3), keys[3].clone())
            .expect("a valid configuration");
        Self { node, mempool: InMemoryMempool::new(MempoolLimits::default()), actions: Vec::new() }
    }

    fn at(
        &mut self,
        now: u64,
        f: impl FnOnce(&mut Streamlet, &mut agora_consensus::Ctx<'_, Streamlet>),
    ) {
        let mut check = DirectCheck;
        let mut ctx =
            Context::new(now, NodeId(3), &mut self.actions, &mut self.mempool, &mut check);
        f(&mut self.node, &mut ctx);
    }

    fn submit(&mut self, k: u64) {
        let tx =
            Transaction::new_signed(&SecretKey::from_seed(9, k), k, Bytes::from_static(b"order"))
                .unwrap();
        self.at(1, |node, ctx| {
            node.on_transaction(ctx, tx).unwrap();
        });
    }

    fn timer(&mut self, epoch: u64, timer: StreamletTimer) {
        self.at(2 * DELTA * (epoch - 1) + 1, |node, ctx| node.on_timer(ctx, timer));
    }

    /// (recipient, transactions) of each Forward sent since the last call.
    fn forwards(&mut self) -> Vec<(NodeId, usize)> {
        let sent = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { to, message: StreamletMessage::Forward(txs) } => {
                    Some((*to, txs.len()))
                }
                _ => None,
            })
            .collect();
        self.actions.clear();
        sent
    }
}

#[test]
fn submissions_are_forwarded_in_batches_to_the_next_two_leaders() {
    let mut n = Node::new(4);
    for k in 0..10 {
        n.submit(k);
    }
    // Two full batches of four went out at once, each to the leaders of epochs 1 and 2.
    assert_eq!(n.forwards(), vec![(NodeId(1), 4), (NodeId(2), 4), (NodeId(1), 4), (NodeId(2), 4)]);
    // The remaining two leave with the next event the node handles.
    n.timer(1, StreamletTimer::MidEpoch(Epoch(0)));
    assert_eq!(n.forwards(), vec![(NodeId(1), 2), (NodeId(2), 2)]);
}

#[test]
fn a_backlog_is_reforwarded_only_after_it_has_waited() {
    let mut n = Node::new(256);
    for k in 0..5 {
        n.submit(k);
    }
    n.timer(1, StreamletTimer::EpochStart(Epoch(1)));
    // Flushed after entering epoch 1: to the leader of epoch 2 (epoch 3's is this node).
    assert_eq!(n.forwards(), vec![(NodeId(2), 5)]);
    // Mid-epoch re-forwards of transactions forwarded just now would only repeat them.
    for epoch in 1..4 {
        n.timer(epoch, StreamletTimer::EpochStart(Epoch(epoch)));
        n.timer(epoch, StreamletTimer::MidEpoch(Epoch(epoch)));
        assert_eq!(n.forwards(), vec![], "epoch {epoch}");
    }
    // Still pending four epochs later: the next leader gets them again, once.
    n.timer(5, StreamletTimer::EpochStart(Epoch(5)));
    n.timer(5, StreamletTimer::MidEpoch(Epoch(5)));
    assert_eq!(n.forwards(), vec![(NodeId(2), 5)]);
    n.timer(6, StreamletTimer::EpochStart(Epoch(6)));
    n.timer(6, StreamletTimer::MidEpoch(Epoch(6)));
    assert_eq!(n.forwards(), vec![]);
}
