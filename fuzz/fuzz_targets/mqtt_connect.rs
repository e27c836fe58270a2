//! Fuzz the MQTT CONNECT reader of the embedded broker's front door: it reads the first
//! packet of every client before authenticating it. It must never panic, never claim more
//! bytes than it was given, and what it reads must write back to a packet it reads the same.
//!
//! Run: `scripts/fuzz.sh 60 mqtt_connect`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minitrue_ingest::broker::connect::Connect;

fuzz_target!(|data: &[u8]| {
    if let Ok((connect, used)) = Connect::parse(data) {
        assert!(used <= data.len());
        let encoded = connect.encode();
        let (again, again_used) = Connect::parse(&encoded).expect("an encoded CONNECT parses");
        assert_eq!(again, connect);
        assert_eq!(again_used, encoded.len());
        let swapped = connect.with_credentials("minitrue-node", b"secret");
        assert!(Connect::parse(&swapped.encode()).is_ok());
    }
});
