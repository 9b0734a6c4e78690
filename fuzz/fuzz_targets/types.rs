//! Transactions, batches, blocks, votes and certificates: errors or canonical values.
#![no_main]

use agora::types::{Batch, Block, Certificate, Transaction, Vote, codec};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn canonical<T: serde::de::DeserializeOwned + serde::Serialize>(data: &[u8]) {
    if let Ok(value) = codec::decode::<T>(data) {
        assert_eq!(&codec::encode(&value).expect("re-encodes")[..], data, "not canonical");
    }
}

fuzz_target!(|data: &[u8]| {
    canonical::<Transaction>(data);
    canonical::<Block>(data);
    canonical::<Vote>(data);
    canonical::<Certificate>(data);
    if let Ok(batch) = Batch::from_encoded(Bytes::copy_from_slice(data)) {
        assert_eq!(&batch.encoded()[..], data);
    }
});
