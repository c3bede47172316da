//! What decoding bytes from outside may allocate, measured by the allocator itself: a length
//! prefix asks, the decoder refuses. One test in its own binary, so that nothing else
//! allocates while it measures.

use serde::{Deserialize, Serialize};
use sora::codec::{Bincode, Codec, DECODE_LIMIT};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The shape of the envelopes nodes exchange: names, bytes, options, lists.
#[derive(Debug, Serialize, Deserialize)]
enum Envelope {
    Act {
        service: String,
        action: String,
        params: Vec<u8>,
        correlation_id: Option<String>,
        schemas: Vec<u64>,
    },
    Events {
        node: String,
        names: Vec<(String, String)>,
        payloads: Vec<Option<Vec<u8>>>,
    },
}

/// The bytes of a bincode length prefix that claims `len`.
fn length(len: u64) -> Vec<u8> {
    let mut bytes = vec![0xfd];
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes
}

/// How many bytes decoding `bytes` allocated, and whether it decoded.
fn allocated_by(bytes: &[u8]) -> (usize, bool) {
    let region = Region::new(GLOBAL);
    let decoded = Bincode::decode::<Envelope>(bytes).is_ok();
    (region.change().bytes_allocated, decoded)
}

#[test]
fn decoding_allocates_no_more_than_the_message_holds_or_the_limit() {
    let good = Envelope::Act {
        service: "Translator".into(),
        action: "translate".into(),
        params: vec![7; 100],
        correlation_id: Some("c".into()),
        schemas: vec![1, 2, 3],
    };
    let good = Bincode::encode(&good).unwrap();
    let (used, ok) = allocated_by(&good);
    assert!(ok && used < 4096, "{used}");

    // A string that claims 2^40 bytes, u64::MAX, just past the limit: refused, nothing
    // allocated for it.
    for claim in [1 << 40, u64::MAX, DECODE_LIMIT as u64 + 1] {
        let mut bomb = vec![0]; // `Act`
        bomb.extend(length(claim));
        let (used, ok) = allocated_by(&bomb);
        assert!(!ok);
        assert!(used < 4096, "a claim of {claim} allocated {used} bytes");
    }
    // In an events batch, in the second name of a pair.
    let mut bomb = vec![1]; // `Events`
    bomb.extend(Bincode::encode("alpha@h").unwrap());
    bomb.push(1);
    bomb.extend(Bincode::encode("Translator").unwrap());
    bomb.extend(length(1 << 40));
    let (used, ok) = allocated_by(&bomb);
    assert!(!ok && used < 4096, "{used}");

    // A list that claims billions of elements reserves at most a little ahead of what it reads.
    let mut bomb = vec![0];
    for field in ["Translator", "translate"] {
        bomb.extend(Bincode::encode(field).unwrap());
    }
    bomb.extend(length(1 << 40));
    let (used, ok) = allocated_by(&bomb);
    assert!(!ok && used <= (1 << 20) + 4096, "{used}");

    // Within the limit, a claim is taken at its word once (then the message ends): what
    // decoding one message may set aside is the limit, never more.
    for claim in [1 << 20, DECODE_LIMIT as u64] {
        let mut bomb = vec![0];
        bomb.extend(length(claim));
        let (used, ok) = allocated_by(&bomb);
        assert!(!ok);
        assert!(
            used <= DECODE_LIMIT + 4096,
            "a claim of {claim} allocated {used} bytes"
        );
    }
}
