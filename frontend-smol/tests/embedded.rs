//! Embedding the server in a program's own integration tests, as people use aiosmtpd's
//! Controller or Mailpit: start it on a free port with a destination of your own that
//! keeps the messages in memory, send mail with any SMTP client, and look at what
//! arrived. Here the client is a few lines over `std::net`; a real program would use its
//! own mailer.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use frontend_smol::{Config, Deliver, Message, Transaction};
use proto::Recipient;
use proto::syntax::{MailParams, ReversePath};
use proto::{DeliveryError, Envelope, Verdict};

/// A received message: who sent it, to whom, and its text.
#[derive(Clone, Debug)]
struct Received {
    from: String,
    to: Vec<String>,
    text: Vec<u8>,
}

/// A destination that keeps every message in memory, and refuses one recipient to show
/// how a destination says no.
#[derive(Clone, Debug, Default)]
struct Inbox(Arc<Mutex<Vec<Received>>>);

/// A message on its way into the inbox: the transaction, and then the message.
#[derive(Debug)]
struct Arriving {
    inbox: Inbox,
    received: Received,
}

impl Deliver for Inbox {
    type Transaction = Arriving;

    async fn start(
        &self,
        from: &ReversePath<'static>,
        _: &MailParams,
    ) -> Result<Arriving, DeliveryError> {
        Ok(Arriving {
            inbox: self.clone(),
            received: Received {
                from: from.to_string(),
                to: Vec::new(),
                text: Vec::new(),
            },
        })
    }
}

impl Transaction for Arriving {
    type Message = Self;

    async fn add_recipient(&mut self, r: &Recipient) -> Result<(), DeliveryError> {
        if r.address.starts_with("nobody@") {
            return Err(DeliveryError::permanent()); // 550 5.1.1 at RCPT
        }
        self.received.to.push(r.address.clone());
        Ok(())
    }

    async fn begin(self, _: &Envelope) -> Result<Self, DeliveryError> {
        Ok(self)
    }
}

impl Message for Arriving {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        self.received.text.extend_from_slice(bytes);
        Ok(())
    }

    /// `_verdict` holds the sender checks' findings: empty here, as `GSMTP_VERIFY` is off.
    async fn commit(self, _verdict: &Verdict) -> Result<(), DeliveryError> {
        self.inbox
            .0
            .lock()
            .map_err(|_| DeliveryError::transient())?
            .push(self.received);
        Ok(())
    }
}

/// Sends `lines` one by one and returns the first reply line to each.
fn converse(addr: std::net::SocketAddr, lines: &[&str]) -> Vec<String> {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = BufReader::new(tcp.try_clone().expect("clone"));
    let mut writer = tcp;
    let mut read_reply = || {
        let mut last = String::new();
        loop {
            last.clear();
            reader.read_line(&mut last).expect("a reply");
            if last.as_bytes().get(3) != Some(&b'-') {
                return last.trim_end().to_string();
            }
        }
    };
    let mut replies = vec![read_reply()];
    for line in lines {
        writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
        if !line.is_empty() && *line != "Subject: hello" {
            replies.push(read_reply());
        }
    }
    replies
}

#[test]
fn messages_are_collected_in_memory() {
    let inbox = Inbox::default();
    let mut cfg = Config::default();
    cfg.listen = "127.0.0.1:0".parse().expect("an address"); // any free port
    cfg.host_name = "test.invalid".into();
    let server = frontend_smol::start_with(cfg, inbox.clone()).expect("the server starts");

    let replies = converse(
        server.local_addr(),
        &[
            "EHLO client.example",
            "MAIL FROM:<app@example.net>",
            "RCPT TO:<alice@example.com>",
            "RCPT TO:<nobody@example.com>",
            "DATA",
            "Subject: hello",
            "",
            ".",
            "QUIT",
        ],
    );
    assert!(replies[0].starts_with("220 test.invalid"), "{replies:?}");
    assert_eq!(replies[4], "550 5.1.1 Error: mailbox unavailable");
    assert!(
        replies[6].starts_with("250 2.0.0 OK : queued as "),
        "{replies:?}"
    );

    let got = inbox.0.lock().expect("the inbox").clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "<app@example.net>");
    assert_eq!(got[0].to, ["alice@example.com"]);
    assert_eq!(got[0].text, b"Subject: hello\r\n\r\n");
    server.shutdown(Duration::from_secs(1));
}

/// A destination that panics: its message gets `451 4.3.0`, never `250` or a `5xx`,
/// and the server goes on serving.
#[derive(Clone, Copy, Debug)]
struct Broken;

impl Deliver for Broken {
    type Transaction = Self;

    async fn start(&self, _: &ReversePath<'static>, _: &MailParams) -> Result<Self, DeliveryError> {
        Ok(Self)
    }
}

impl Transaction for Broken {
    type Message = Self;

    async fn begin(self, _: &Envelope) -> Result<Self, DeliveryError> {
        Ok(self)
    }
}

impl Message for Broken {
    async fn write(&mut self, _: &[u8]) -> Result<(), DeliveryError> {
        Ok(())
    }

    async fn commit(self, _: &Verdict) -> Result<(), DeliveryError> {
        panic!("a bug in the destination")
    }
}

#[test]
fn a_panicking_destination_is_a_451() {
    let mut cfg = Config::default();
    cfg.listen = "127.0.0.1:0".parse().expect("an address");
    let server = frontend_smol::start_with(cfg, Broken).expect("the server starts");
    let session = [
        "EHLO client.example",
        "MAIL FROM:<app@example.net>",
        "RCPT TO:<alice@example.com>",
        "DATA",
        "Subject: hello",
        "",
        ".",
        "QUIT",
    ];
    for _ in 0..2 {
        let replies = converse(server.local_addr(), &session);
        assert_eq!(
            replies[5], "451 4.3.0 Error: queue file write error",
            "{replies:?}"
        );
        assert_eq!(replies[6], "221 2.0.0 Bye");
    }
    server.shutdown(Duration::from_secs(1));
}
