//! A market transaction's payload: any bytes decode to an error or to a canonical action.
#![no_main]

use agora::market::OrderAction;
use agora::types::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(action) = codec::decode::<OrderAction>(data) {
        assert_eq!(&codec::encode(&action).expect("re-encodes")[..], data, "not canonical");
    }
});
