//! Arbitrary bytes into `Frame::decode`: it must never panic, and whatever it accepts must
//! re-encode (plain and compressed) to a frame that decodes equal, using exactly the bytes
//! it was written to. Op bodies also go through `codec::decode`, the next decoder a
//! target runs on a peer's bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_engine::net::proto::{Frame, Policy, MAX_FRAME};
use rill_ops::codec;

fuzz_target!(|data: &[u8]| {
    let Ok((frame, used)) = Frame::decode(data, MAX_FRAME) else {
        return;
    };
    assert!(used <= data.len(), "used {used} of {} bytes", data.len());
    if let Frame::Op { body, .. } = &frame {
        let _ = codec::decode(body);
        let _ = codec::decode_relative(body);
    }
    for policy in [Policy::PLAIN, Policy::zstd(1)] {
        let mut out = Vec::new();
        let n = frame
            .encode(policy, &mut out)
            .unwrap_or_else(|e| panic!("decoded {frame:?} does not re-encode: {e}"));
        assert_eq!(n, out.len());
        match Frame::decode(&out, MAX_FRAME) {
            Ok((again, m)) => {
                assert_eq!(again, frame, "re-encoded frame decodes differently");
                assert_eq!(
                    m,
                    out.len(),
                    "re-encoded frame decodes from {m} of {n} bytes"
                );
            }
            Err(e) => panic!("re-encoded {frame:?} does not decode: {e}"),
        }
    }
});
