//! Every limit, enforced: message size, recipients, text lines, time, clients, and the
//! graceful shutdown.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::fixture::split_trace;
use crate::{Client, Fixture, Start};

/// A body of exactly `n` octets (as RFC 1870 counts: CRLFs in, stuffing out).
fn body_of(n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(n);
    while b.len() + 80 <= n {
        b.extend_from_slice(format!(".{}\r\n", "z".repeat(77)).as_bytes());
    }
    let rest = n - b.len();
    if rest >= 2 {
        b.extend(std::iter::repeat_n(b'q', rest - 2));
        b.extend_from_slice(b"\r\n");
    } else {
        b.extend(std::iter::repeat_n(b'q', rest));
    }
    b
}

/// GSMTP_MAX_SIZE itself is accepted.
pub fn message_of_exactly_max_size_is_accepted(start: Start) {
    let fx = Fixture::start(start, |c| c.max_size = 10_000);
    let mut c = fx.session();
    let body = body_of(10_000);
    assert_eq!(body.len(), 10_000);
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], &body).code,
        250
    );
    let (_, stored) = split_trace(&fx.stored("example.com/u")[0]);
    assert_eq!(stored, body.as_slice());
}

/// One octet over: the body is read to its end, answered 552 5.3.4, nothing is stored,
/// and the session carries on.
pub fn oversize_message_is_refused_and_session_goes_on(start: Start) {
    let fx = Fixture::start(start, |c| c.max_size = 10_000);
    let mut c = fx.session();
    let r = c.send_mail("a@example.net", &["u@example.com"], &body_of(10_001));
    assert_eq!(
        r.wire(),
        "552 5.3.4 Error: message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(c.cmd("NOOP").code, 250);
    let r = c.send_mail(
        "a@example.net",
        &["u@example.com"],
        &body_of(50_000)[..9_000],
    );
    assert_eq!(r.code, 250);
    assert_eq!(fx.stored("example.com/u").len(), 1);
    assert!(fx.tmp_files().is_empty());
}

/// Beyond GSMTP_MAX_RCPT recipients: 452 4.5.3, and the message goes to the others.
pub fn recipient_limit(start: Start) {
    let fx = Fixture::start(start, |c| c.max_recipients = 3);
    let mut c = fx.session();
    c.cmd("MAIL FROM:<a@example.net>");
    for user in ["r1", "r2", "r3"] {
        assert_eq!(c.cmd(&format!("RCPT TO:<{user}@example.com>")).code, 250);
    }
    assert_eq!(
        c.cmd("RCPT TO:<r4@example.com>").wire(),
        "452 4.5.3 Error: too many recipients\r\n"
    );
    c.cmd("DATA");
    c.send(b"x\r\n.\r\n");
    assert_eq!(c.reply().code, 250);
    assert_eq!(fx.all_files().len(), 3);
}

/// Text lines may be 1000 octets with CRLF; a longer one refuses the message (554 5.6.0).
pub fn text_line_limit(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut c = fx.session();
    let ok = format!("{}\r\n", "a".repeat(998));
    assert_eq!(
        c.send_mail("a@example.net", &["u@example.com"], ok.as_bytes())
            .code,
        250
    );
    let long = format!("{}\r\n", "a".repeat(999));
    let r = c.send_mail("a@example.net", &["u@example.com"], long.as_bytes());
    assert_eq!(r.wire(), "554 5.6.0 Error: message line too long\r\n");
    assert_eq!(c.cmd("NOOP").code, 250);
    assert_eq!(fx.stored("example.com/u").len(), 1);
}

/// A silent client gets 421 4.4.2 after GSMTP_TIMEOUT and is disconnected.
pub fn idle_timeout(start: Start) {
    let fx = Fixture::start(start, |c| c.timeout = Duration::from_secs(1));
    let mut c = fx.session();
    let begun = Instant::now();
    assert_eq!(
        c.reply().wire(),
        "421 4.4.2 mx.test Error: timeout exceeded\r\n"
    );
    let waited = begun.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(c.is_closed());
}

/// The timeout also runs between data blocks; a half-sent message is not stored.
pub fn idle_timeout_mid_data_stores_nothing(start: Start) {
    let fx = Fixture::start(start, |c| c.timeout = Duration::from_secs(1));
    let mut c = fx.session();
    c.cmd("MAIL FROM:<a@example.net>");
    c.cmd("RCPT TO:<u@example.com>");
    c.cmd("DATA");
    c.send(&"partial line\r\n".repeat(10_000).into_bytes());
    assert_eq!(c.reply().code, 421);
    assert!(c.is_closed());
    fx.wait_idle();
    assert!(
        fx.all_files().iter().all(|f| !f.contains("/new/")),
        "{:?}",
        fx.all_files()
    );
    assert!(fx.tmp_files().is_empty());
}

/// Over GM_MAX_CLIENTS, a connection is answered 421 4.3.2 and closed; a freed slot is
/// usable again.
pub fn max_clients(start: Start) {
    let fx = Fixture::start(start, |c| c.max_clients = 2);
    let mut a = fx.session();
    let _b = fx.session();
    let mut extra = fx.connect();
    assert_eq!(
        extra.reply().wire(),
        "421 4.3.2 mx.test Error: too many connections, try again later\r\n"
    );
    assert!(extra.is_closed());
    a.cmd("QUIT");
    assert!(a.is_closed());
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = fx.connect();
        let r = c.reply();
        if r.code == 220 {
            break;
        }
        assert!(Instant::now() < end, "no slot freed: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Shutdown: new connections are refused, open sessions may finish during the grace
/// period, then the rest get 421 4.3.2; nothing half-received is stored.
pub fn graceful_shutdown(start: Start) {
    let fx = Fixture::start(start, |_| {});
    let mut idle = fx.session();
    let mut finishing = fx.session();
    let mut half = fx.session();
    half.cmd("MAIL FROM:<a@example.net>");
    half.cmd("RCPT TO:<half@example.com>");
    half.cmd("DATA");
    half.send(b"half a message\r\n");
    let addr = fx.server.smtp();
    std::thread::scope(|s| {
        let stopper = s.spawn(|| fx.server.shutdown(Duration::from_millis(1500)));
        std::thread::sleep(Duration::from_millis(300));
        // The listener is closed: a new client gets no greeting.
        let refused = match TcpStream::connect(addr) {
            Err(_) => true,
            Ok(tcp) => {
                tcp.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut c = Client::from_stream(tcp);
                c.is_closed()
            }
        };
        assert!(refused, "a connection was accepted after shutdown began");
        // An open session can still deliver during the grace period.
        assert_eq!(
            finishing
                .send_mail("a@example.net", &["done@example.com"], b"made it\r\n")
                .code,
            250
        );
        for c in [&mut idle, &mut half] {
            assert_eq!(
                c.reply().wire(),
                "421 4.3.2 mx.test Service shutting down, try again later\r\n"
            );
            assert!(c.is_closed());
        }
        stopper.join().expect("shutdown returns");
    });
    assert_eq!(fx.stored("example.com/done").len(), 1);
    assert!(fx.stored("example.com/half").is_empty());
    assert!(fx.tmp_files().is_empty());
}
