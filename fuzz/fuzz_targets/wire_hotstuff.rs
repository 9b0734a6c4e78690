//! HotStuff wire messages: any bytes decode to an error or to a canonical message.
#![no_main]

use agora::hotstuff::HotStuffMessage;
use agora::types::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = codec::decode::<HotStuffMessage>(data) {
        assert_eq!(&codec::encode(&message).expect("re-encodes")[..], data, "not canonical");
    }
});
