//! Fuzzes `lbsim::validate::check_head` with both clouds' rules and every desync mode.
//!
//! Beyond "never panics", each input checks what the proxy relies on:
//! - an accepted head ends with an empty line within the input, and the head alone gets
//!   the same verdict (the bytes after it cannot matter);
//! - a decided verdict does not change when more bytes arrive (checked on the input with
//!   its last bytes cut off: that prefix must be undecided or decided alike).
#![no_main]

use lbsim::validate::{check_head, DesyncMode, Rules, Verdict, AWS_RULES, GCP_RULES};
use libfuzzer_sys::fuzz_target;

const RULE_SETS: [Rules; 4] = [
    AWS_RULES,
    GCP_RULES,
    Rules {
        desync: DesyncMode::Monitor,
        ..AWS_RULES
    },
    Rules {
        desync: DesyncMode::Strictest,
        ..GCP_RULES
    },
];

fuzz_target!(|data: &[u8]| {
    for rules in &RULE_SETS {
        let verdict = check_head(data, rules);
        if let Verdict::Accept { head_len, .. } = verdict {
            assert!(head_len <= data.len());
            let head = &data[..head_len];
            assert!(head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"));
            assert_eq!(check_head(head, rules), verdict);
        }
        // Shorter prefixes: undecided, or decided as the whole input is.
        for cut in [1, 2, 7, data.len() / 2] {
            if cut == 0 || cut > data.len() {
                continue;
            }
            let len = data.len() - cut;
            let early = check_head(&data[..len], rules);
            let head_done = matches!(verdict, Verdict::Accept { head_len, .. } if len >= head_len);
            assert!(
                early == verdict || (early == Verdict::NeedMore && !head_done),
                "prefix of {len} bytes: {early:?}; whole: {verdict:?}"
            );
        }
    }
});
