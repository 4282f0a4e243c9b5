//! An in-memory driver: runs a [`Connection`] over scripted input in virtual time.
//!
//! It plays the part of a frontend with a perfect network and an instant store, in the
//! manner of quinn's test `Pair` and str0m's `progress`. Tests, property tests, fuzz
//! targets and the benchmark use it; no real server does.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::conn::{Accept, Action, Check, CloseReason, Connection};
use crate::delivery::{DeliveryError, Envelope, TlsInfo};

/// A message the simulated store committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its envelope.
    pub envelope: Envelope,
    /// Its body, exactly as the connection handed it over.
    pub body: Vec<u8>,
}

/// A connection driven in memory. See the module docs.
#[derive(Debug)]
pub struct Sim {
    /// The connection under test.
    pub conn: Connection,
    /// The virtual clock.
    pub now: Instant,
    /// Every byte the connection sent.
    pub out: Vec<u8>,
    /// Committed messages, in order.
    pub stored: Vec<Stored>,
    /// How many messages were aborted after their text began.
    pub aborted: usize,
    /// Body bytes of the open spool, if any.
    pub spool: Option<(Envelope, Vec<u8>)>,
    /// Set once the connection closed.
    pub closed: Option<CloseReason>,
    /// What the next commits report; `Ok` by default.
    pub delivery: Result<(), DeliveryError>,
    /// How checks are answered; every one passes by default.
    pub check: fn(&Check<'_>) -> Result<(), DeliveryError>,
    /// How many checks were asked.
    pub checks: usize,
    /// Whether the simulated destination holds a transaction: from a passed
    /// [`Check::Sender`] to its commit or abort.
    pub open: bool,
    /// How many TLS handshakes were simulated.
    pub handshakes: usize,
    /// The most bytes the connection held buffered after a pump, for bounds checks.
    pub max_buffered: usize,
}

impl Sim {
    /// A session from `192.0.2.1:4000`, connection #1, at the Unix epoch.
    pub fn new(cfg: Config) -> Self {
        Self::with_accept(cfg, Self::accept())
    }

    /// The connection [`Sim::new`] uses: from `192.0.2.1:4000`, connection #1 of one,
    /// at the Unix epoch, without TLS.
    pub fn accept() -> Accept {
        Accept {
            peer: "192.0.2.1:4000".parse().expect("a valid address"),
            id: 1,
            active: 1,
            wall: SystemTime::UNIX_EPOCH,
            instance: 0,
            tls: None,
        }
    }

    /// A session with the given accept data.
    pub fn with_accept(cfg: Config, accept: Accept) -> Self {
        let now = Instant::now(); // purity: the virtual clock's origin; it only moves by `advance`
        let conn = Connection::new(Arc::new(cfg), now, accept);
        let mut sim = Self {
            conn,
            now,
            out: Vec::new(),
            stored: Vec::new(),
            aborted: 0,
            spool: None,
            closed: None,
            delivery: Ok(()),
            check: |_| Ok(()),
            checks: 0,
            open: false,
            handshakes: 0,
            max_buffered: 0,
        };
        sim.pump();
        sim
    }

    /// Delivers `bytes` as one read, then runs the connection until it wants more.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.closed.is_none() {
            self.conn.handle_input(self.now, bytes);
            self.pump();
        }
    }

    /// The client closes its side.
    pub fn eof(&mut self) {
        self.conn.handle_eof(self.now);
        self.pump();
    }

    /// Moves the clock forward and lets timers fire.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.conn.handle_timeout(self.now);
        self.pump();
    }

    /// The output so far as text, and clears it.
    pub fn take_output(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.out)).into_owned()
    }

    /// Runs `poll_transmit`/`poll_action` until the connection waits for input or closes.
    pub fn pump(&mut self) {
        loop {
            self.conn.poll_transmit(&mut self.out);
            match self.conn.poll_action() {
                Action::Read => {
                    self.conn.poll_transmit(&mut self.out);
                    break;
                }
                Action::StartTls => {
                    self.conn.poll_transmit(&mut self.out);
                    self.handshakes += 1;
                    let info = TlsInfo {
                        version: "TLSv1.3".into(),
                        cipher: "TLS13_AES_128_GCM_SHA256".into(),
                    };
                    self.conn.handle_tls_established(self.now, info);
                }
                Action::Begin(env) => {
                    assert!(self.open, "Begin without a transaction");
                    assert!(self.spool.is_none(), "Begin while a spool is open");
                    self.spool = Some((env.clone(), Vec::new()));
                }
                Action::Write(bytes) => {
                    let (_, body) = self.spool.as_mut().expect("Store without Begin");
                    body.extend_from_slice(bytes);
                }
                Action::Commit => {
                    assert!(self.open, "Commit without a transaction");
                    self.open = false;
                    let (envelope, body) = self.spool.take().expect("Commit without Begin");
                    if self.delivery.is_ok() {
                        self.stored.push(Stored { envelope, body });
                    }
                    self.conn.handle_delivery(self.now, self.delivery.clone());
                }
                Action::Abort => {
                    assert!(self.open, "Abort without a transaction");
                    self.open = false;
                    if self.spool.take().is_some() {
                        self.aborted += 1;
                    }
                }
                Action::Check(check) => {
                    let result = (self.check)(&check);
                    self.checks += 1;
                    if let Check::Sender { .. } = check {
                        assert!(!self.open, "MAIL while a transaction is open");
                        self.open = result.is_ok();
                    }
                    self.conn.handle_check(self.now, result);
                }
                Action::AwaitDelivery => unreachable!("commits and checks complete at once here"),
                Action::Close(reason) => {
                    self.conn.poll_transmit(&mut self.out);
                    self.closed = Some(reason);
                    break;
                }
            }
        }
        self.max_buffered = self.max_buffered.max(self.conn.buffered_len());
        assert!(
            !self.open || self.closed.is_none(),
            "a transaction left open at close"
        );
    }
}
