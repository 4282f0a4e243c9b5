//! A sender's header section, any octets: removing fields forged in our name never
//! panics and leaves none (a second pass removes nothing, for ours and for the fields
//! of our own names); finding the end of the section piece by piece, as the checks'
//! reading does, finds the same end as one search, however the text is cut; the edits a
//! filter asks for never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::header::{self, Edit};
use proto::verdict::{own_fields, remove_own_results};

const ID: &str = "mx.test";

fuzz_target!(|text: &[u8]| {
    let own = own_fields(true, true);
    let (clean, _) = remove_own_results(text, ID, own);
    let (again, removed) = remove_own_results(&clean, ID, own);
    assert_eq!(
        removed,
        0,
        "a forged field survived: {:?}",
        String::from_utf8_lossy(&clean)
    );
    assert_eq!(again, clean);

    // Piece by piece, as `Reading` does: search again from where the last search ended.
    let whole = header::header_end(text, 0);
    for piece in [1, 2, 3, 5, 64] {
        let mut held = Vec::new();
        let mut found = None;
        for chunk in text.chunks(piece) {
            let scanned = held.len();
            held.extend_from_slice(chunk);
            found = header::header_end(&held, scanned);
            if found.is_some() {
                break;
            }
        }
        assert_eq!(found, whole, "reads of {piece} and one search disagree");
    }

    let (fields, _) = header::split_blank(&text[..whole.unwrap_or(text.len())]);
    let name = |n: &str| n.to_string();
    let value = |v: &str| v.to_string();
    let edits = [
        Edit::Remove {
            name: name("Authentication-Results"),
            nth: -1,
        },
        Edit::Change {
            name: name("subject"),
            nth: 2,
            value: Some(value("a\nfolded\r\n value")),
        },
        Edit::Change {
            name: name("X-Spam"),
            nth: 1,
            value: None,
        },
        Edit::Insert {
            index: 1,
            name: name("X-Spam"),
            value: value(" yes"),
        },
        Edit::Remove {
            name: name("Received"),
            nth: 0,
        },
        Edit::Add {
            name: name("X-Spam-Status"),
            value: value("No"),
        },
    ];
    let _ = header::apply(fields, &edits);
});
