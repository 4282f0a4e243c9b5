//! `parse_command` on any octets never panics, and whatever parses survives a round trip
//! through its canonical encoding: `parse_command(encode(c)) == c`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::parse_command;

fuzz_target!(|line: &[u8]| {
    let Ok(cmd) = parse_command(line) else {
        return;
    };
    let mut out = Vec::new();
    cmd.encode(&mut out);
    let encoded = out
        .strip_suffix(b"\r\n")
        .expect("encode ends the line with CRLF");
    assert!(
        !encoded.contains(&b'\r') && !encoded.contains(&b'\n'),
        "CR or LF inside the encoded line {:?}",
        encoded.escape_ascii().to_string()
    );
    assert_eq!(
        parse_command(encoded),
        Ok(cmd),
        "encoded as {:?}",
        encoded.escape_ascii().to_string()
    );
});
