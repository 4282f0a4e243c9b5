//! Any reads, timer advances and end of input, under several configurations: nothing
//! panics (the simulator also checks the Begin/Store/Commit/Abort protocol), the receive
//! buffer stays bounded, every reply line is well formed, and the counters agree.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use proto::Accept;
use proto::Config;
use proto::config::BareNewline;
use proto::sim::Sim;

#[derive(Arbitrary, Debug)]
enum Setup {
    Default,
    Reject,
    Tls,
    /// Low limits: size, recipients, errors, no text line limit.
    Tight,
    /// A client on a trusted proxy address, so XCLIENT is allowed.
    Trusted,
    /// AUTH offered without TLS, any password accepted.
    Auth,
}

/// Well-formed command lines, so that the fuzzer reaches deep states quickly.
#[derive(Arbitrary, Debug)]
enum Line {
    Ehlo,
    Helo,
    Mail,
    MailSize(u32),
    Rcpt,
    Data,
    Bdat(u16, bool),
    EndOfData,
    Rset,
    Noop,
    Quit,
    StartTls,
    Xclient,
    /// `AUTH PLAIN` or `AUTH LOGIN`, with or without an initial response.
    Auth(bool, Option<Vec<u8>>),
    /// A SASL response: these octets in base64.
    Response(Vec<u8>),
}

impl Line {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Ehlo => b"EHLO client.example\r\n".to_vec(),
            Self::Helo => b"HELO client.example\r\n".to_vec(),
            Self::Mail => b"MAIL FROM:<a@b.example>\r\n".to_vec(),
            Self::MailSize(n) => format!("MAIL FROM:<a@b.example> SIZE={n}\r\n").into_bytes(),
            Self::Rcpt => b"RCPT TO:<c@d.example>\r\n".to_vec(),
            Self::Data => b"DATA\r\n".to_vec(),
            Self::Bdat(n, last) => {
                let marker = if *last { " LAST" } else { "" };
                format!("BDAT {n}{marker}\r\n").into_bytes()
            }
            Self::EndOfData => b"\r\n.\r\n".to_vec(),
            Self::Rset => b"RSET\r\n".to_vec(),
            Self::Noop => b"NOOP\r\n".to_vec(),
            Self::Quit => b"QUIT\r\n".to_vec(),
            Self::StartTls => b"STARTTLS\r\n".to_vec(),
            Self::Xclient => b"XCLIENT ADDR=10.0.0.1 NAME=x.example\r\n".to_vec(),
            Self::Auth(plain, initial) => {
                let mech = if *plain { "PLAIN" } else { "LOGIN" };
                match initial {
                    Some(i) => format!("AUTH {mech} {}\r\n", base64(i)).into_bytes(),
                    None => format!("AUTH {mech}\r\n").into_bytes(),
                }
            }
            Self::Response(r) => format!("{}\r\n", base64(r)).into_bytes(),
        }
    }
}

/// Standard base64 with padding (`=` for nothing, as SASL writes an empty response).
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if data.is_empty() {
        return "=".into();
    }
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Arbitrary, Debug)]
enum Op {
    Send(Vec<u8>),
    /// Well-formed lines in one read, followed by any octets.
    Lines(Vec<Line>, Vec<u8>),
    /// Milliseconds; the default timeout is 100 s.
    Advance(u32),
    Eof,
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

fn sim(setup: &Setup) -> Sim {
    let mut cfg = Config::default();
    let mut peer = "192.0.2.1:4000";
    match setup {
        Setup::Default => {}
        Setup::Reject => cfg.bare_newline = BareNewline::Reject,
        Setup::Tls => {
            cfg.tls_cert = Some("c".into());
            cfg.tls_key = Some("k".into());
        }
        Setup::Tight => {
            cfg.max_size = 64;
            cfg.max_recipients = 2;
            cfg.max_errors = 3;
            cfg.max_text_line = 0;
        }
        Setup::Trusted => peer = "127.0.0.1:4000",
        Setup::Auth => {
            cfg.auth = proto::config::AuthMode::AcceptAny;
            cfg.auth_insecure = true;
        }
    }
    let accept = Accept {
        peer: peer.parse().expect("a valid address"),
        id: 1,
        active: 1,
        wall: SystemTime::UNIX_EPOCH,
        instance: 0,
        tls: None,
    };
    Sim::with_accept(cfg, accept)
}

/// Every line is `<3 digits><SP or -><text>CRLF`, and a multi-line reply keeps its code.
fn check_replies(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    let text = out.strip_suffix(b"\r\n").expect("output ends with CRLF");
    let mut continued: Option<&[u8]> = None;
    let mut rest = text;
    loop {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let shown = line.escape_ascii().to_string();
        assert!(
            line.len() >= 4
                && line[..3].iter().all(u8::is_ascii_digit)
                && matches!(line[3], b' ' | b'-'),
            "malformed reply line {shown:?}"
        );
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "CR or LF in {shown:?}"
        );
        if let Some(code) = continued {
            assert_eq!(
                code,
                &line[..3],
                "a multi-line reply changed code at {shown:?}"
            );
        }
        continued = (line[3] == b'-').then_some(&line[..3]);
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    assert!(continued.is_none(), "output ends inside a multi-line reply");
}

fuzz_target!(|input: Input| {
    let mut sim = sim(&input.setup);
    let bound = Config::default().max_command_line - 1;
    let mut bytes_in = 0u64;
    for op in &input.ops {
        match op {
            Op::Send(bytes) => {
                if sim.closed.is_none() {
                    bytes_in += bytes.len() as u64;
                }
                sim.send(bytes);
            }
            Op::Lines(lines, tail) => {
                let mut bytes: Vec<u8> = lines.iter().flat_map(Line::bytes).collect();
                bytes.extend_from_slice(tail);
                if sim.closed.is_none() {
                    bytes_in += bytes.len() as u64;
                }
                sim.send(&bytes);
            }
            Op::Advance(ms) => sim.advance(Duration::from_millis(u64::from(*ms))),
            Op::Eof => sim.eof(),
        }
        let held = sim.conn.buffered_len();
        assert!(held <= bound, "{held} octets buffered");
        assert_eq!(sim.closed.is_some(), sim.conn.is_closed());
    }
    check_replies(&sim.out);
    assert_eq!(sim.conn.stats().bytes_out, sim.out.len() as u64);
    assert_eq!(sim.conn.stats().bytes_in, bytes_in);
});
