//! The order book's JSON-lines command format, applied: any lines parse to commands or errors,
//! and any sequence of commands leaves the exchange consistent (no panic, no overflow).
#![no_main]

use agora::orderbook::{Command, Exchange, FastBook};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut exchange = Exchange::<FastBook>::new();
    let mut events = Vec::new();
    for line in data.split(|b| *b == b'\n').take(256) {
        if let Ok(command) = serde_json::from_slice::<Command>(line) {
            exchange.apply(&command, &mut events);
            events.clear();
        }
    }
});
