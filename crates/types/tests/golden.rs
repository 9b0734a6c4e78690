//! Golden values: the exact encoding and digests of a fixed block and vote. If this test fails,
//! the wire or hashing format changed, and every stored log and signature with it. Change the
//! constants only for a deliberate, versioned format change.

use agora_types::{
    Batch, Block, Committee, Height, NodeId, Phase, Round, Statement, Transaction, Vote, codec,
};
use bytes::Bytes;

fn fixed_block() -> Block {
    let (_, secrets) = Committee::deterministic(2024, 4).unwrap();
    let txs = vec![
        Transaction::new_signed(&secrets[0], 1, Bytes::from_static(b"buy 10 ETH-USD @ 2000"))
            .unwrap(),
        Transaction::new_signed(&secrets[1], 300, Bytes::from_static(b"")).unwrap(),
    ];
    Block::new(
        Block::genesis().digest(),
        Round(7),
        Height(3),
        NodeId(2),
        123_456_789,
        Batch::new(txs).unwrap(),
    )
}

fn fixed_vote() -> Vote {
    let (_, secrets) = Committee::deterministic(2024, 4).unwrap();
    let statement = Statement {
        phase: Phase::Commit,
        round: Round(7),
        height: Height(3),
        value: fixed_block().digest(),
    };
    Vote::sign(statement, NodeId(3), &secrets[3])
}

const GENESIS_DIGEST: &str = "fbe145cef647438aa72d18199e14ad0355f288b1656eec129f29116128bbefba";
const BLOCK_DIGEST: &str = "e047aa531af54db883872a6e8c6d51d692e94245a6200944eda48546ec566e54";
const BLOCK_ENCODING: &str = "20fbe145cef647438aa72d18199e14ad0355f288b1656eec129f29116128bbefba07030220812c740aefafdf0a8bd5dc0487c03e7cb38d37eabc2c651b0cbf3260deef2a2702959aef3ae101022102cbf3a76322d3de7077105a2345c6cf5ee05ac4d6339e00ad0d926033fdab5fad0115627579203130204554482d5553442040203230303040653e2b90dcd6f66be2f3deb6833268df41a234cf2c991cb5f847e7d29723fb3c322787e072e90f97f1459fac053936336a3a5b0368ce6044973e31320fa2a2bf21023171d5dd3fb4544c7f8ef0d5278d46a2fa5cba75dc3ec11ec823736f9a520bb6ac020040b003949ca512aade935a2c400bda99567f44a87932c81f75da6a610e3057884b77290278deb60ec2daa1daebb87dcfe6e1dd49c6f1a6b315b4806bd880912d58";
const VOTE_ENCODING: &str = "02070320e047aa531af54db883872a6e8c6d51d692e94245a6200944eda48546ec566e54034009537d5dffc53097153b912ba895d0e0186e7ce7f62403ebccd6c6ee58d8768a22a2e1e738fec132200214f32428f375cb2bd6eac6195cdca46c90fef4776c41";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn block_and_vote_encodings_are_pinned() {
    let block = fixed_block();
    let vote = fixed_vote();
    let block_bytes = codec::encode(&block).unwrap();
    let vote_bytes = codec::encode(&vote).unwrap();
    assert_eq!(Block::genesis().digest().to_string(), GENESIS_DIGEST);
    assert_eq!(block.digest().to_string(), BLOCK_DIGEST);
    assert_eq!(hex(&block_bytes), BLOCK_ENCODING);
    assert_eq!(hex(&vote_bytes), VOTE_ENCODING);
    // And the pinned bytes decode back to the same values.
    let decoded: Block = codec::decode(&block_bytes).unwrap();
    assert_eq!(decoded.digest(), block.digest());
    let decoded: Vote = codec::decode(&vote_bytes).unwrap();
    assert_eq!(decoded, vote);
}
