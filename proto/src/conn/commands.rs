//! The RFC 5321 commands: what each does to the session, and what it answers.
//! Sequencing errors get 503, syntax errors 500/501, refused parameters 555.

use std::net::IpAddr;
use std::ops::Range;

use super::transaction::{Mail, Txn};
use super::{Check, Connection, Event, Helo, Mode, Origin};
use crate::command::Command;
use crate::config::AuthMode;
use crate::conn::CloseReason;
use crate::deliver::maildir;
use crate::delivery::{DeliveryError, QueueId, Recipient};
use crate::reply::{self, Reply};
use crate::sasl::{Credentials, Exchange, Step};
use crate::syntax::{
    ForwardPath, MailParams, ParseError, ReversePath, Verb, decode_xtext, parse_command,
};

/// A command waiting for the answer to its [`Check`].
#[derive(Debug)]
pub(super) enum Pending {
    /// MAIL: the transaction it opens.
    Mail(Box<Mail>),
    /// RCPT: the recipient it adds.
    Rcpt(Recipient),
    /// XCLIENT: the client identity it sets, the HELO name (with whether it was EHLO),
    /// and the user the proxy authenticated (`LOGIN`).
    Client {
        ip: IpAddr,
        name: Option<Box<str>>,
        helo: Option<Helo>,
        login: Option<Box<str>>,
    },
    /// HELO or EHLO, when milters are asked about it.
    Helo(Helo),
    /// AUTH: the credentials to check.
    Auth(Credentials),
}

/// `503` for RCPT or XCLIENT while a message is being transferred.
const IN_TRANSACTION: Reply = Reply {
    code: 503,
    status: "5.5.1",
    text: "Error: mail transaction in progress",
};
/// `501` for an XCLIENT attribute this server does not know.
const XCLIENT_NAME: Reply = Reply {
    code: 501,
    status: "5.5.4",
    text: "Error: bad XCLIENT attribute name",
};

impl Connection {
    /// Parses and runs one command line, given by its place in the receive buffer.
    pub(super) fn handle_line(&mut self, line: Range<usize>, bare_lf: bool) {
        self.stats.commands += 1;
        // The line borrows the buffer while the command changes the session; commands never
        // touch the buffer, so it is set aside for the duration.
        let rx = std::mem::take(&mut self.rx);
        let bytes = rx.abs(line);
        if let Some(mut exchange) = self.sasl.take() {
            // A response to an AUTH challenge, never logged: it holds the password.
            self.verb = Some(Verb::Auth);
            let step = exchange.respond(bytes);
            self.sasl_step(Some(*exchange), step);
            self.rx = rx;
            return;
        }
        if self.cfg.verbose {
            self.events.push_back(Event::Command(log_line(bytes)));
        }
        self.verb = None;
        if crate::syntax::is_http_request(bytes) {
            // A browser or proxy tricked into talking to us (a cross-protocol attack):
            // close at once, as Postfix does, before reading anything more.
            self.reject(reply::NON_SMTP);
            self.reset_transaction();
            self.mode = Mode::Closed(CloseReason::Protocol);
        } else if bare_lf && self.bare_newline_rejected() {
            self.reject(reply::BARE_LF);
        } else if bytes.contains(&b'\r') && self.bare_newline_rejected() {
            self.reject(reply::BARE_CR);
        } else {
            match parse_command(bytes) {
                Ok(cmd) => {
                    self.verb = Some(cmd.verb());
                    self.execute(cmd);
                }
                Err(e) => {
                    if let ParseError::Syntax(verb) = e {
                        self.verb = Some(verb);
                    }
                    self.reject(reply::for_parse_error(e));
                    if e == ParseError::Syntax(Verb::Bdat) && !self.is_closed() {
                        // The chunk that follows has no known end, and its octets must
                        // never be read as commands: the session cannot go on.
                        self.reset_transaction();
                        self.mode = Mode::Closed(CloseReason::Protocol);
                    }
                }
            }
        }
        self.rx = rx;
        if self.mode == Mode::Handshake {
            // CVE-2011-0411: whatever came after STARTTLS in plaintext is never used.
            self.rx.clear();
        }
    }

    fn execute(&mut self, cmd: Command<'_>) {
        match cmd {
            Command::Helo(name) | Command::Ehlo(name) => {
                let helo = Helo {
                    name: name.into(),
                    esmtp: matches!(cmd, Command::Ehlo(_)),
                };
                self.reset_transaction();
                if self.cfg.filter.milters.is_empty() {
                    self.greet(helo);
                } else {
                    self.ask(Pending::Helo(helo));
                }
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => self.rcpt(to),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.reset_transaction();
                self.reply(reply::OK);
            }
            Command::Noop => self.reply(reply::OK),
            Command::Quit => {
                self.reset_transaction();
                self.reply(reply::BYE);
                self.mode = Mode::Closed(CloseReason::Quit);
            }
            Command::Vrfy(_) => self.reply(reply::VRFY),
            Command::Expn(_) => self.reject(reply::EXPN),
            Command::Help(_) => self.reply(reply::HELP),
            Command::StartTls => self.starttls(),
            Command::Xclient(attrs) => self.xclient(&attrs),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
        }
    }

    /// Whether AUTH is offered on this connection: on, and over TLS unless
    /// `GSMTP_AUTH_INSECURE`.
    fn auth_offered(&self) -> bool {
        self.cfg.auth != AuthMode::Off && (self.tls.is_some() || self.cfg.auth_insecure)
    }

    /// `AUTH` (RFC 4954 §4): starts a PLAIN or LOGIN exchange.
    fn auth(&mut self, mechanism: &str, initial: Option<&str>) {
        if self.cfg.auth == AuthMode::Off {
            return self.reject(reply::NOT_IMPLEMENTED);
        }
        if self.helo.is_none() {
            return self.reject(reply::NEED_HELO);
        }
        if self.auth_user.is_some() {
            return self.reject(reply::AUTH_ALREADY);
        }
        if !matches!(self.txn, Txn::Idle) {
            return self.reject(IN_TRANSACTION);
        }
        if !self.auth_offered() {
            return self.reject(reply::AUTH_NEEDS_TLS);
        }
        let (exchange, step) = Exchange::start(mechanism, initial);
        self.sasl_step(exchange, step);
    }

    /// Carries out the next step of an AUTH exchange.
    fn sasl_step(&mut self, exchange: Option<Exchange>, step: Step) {
        match step {
            Step::Challenge(text) => {
                reply::write_line(&mut self.tx, 334, "", text);
                self.sasl = exchange.map(Box::new);
            }
            Step::Done(credentials) => self.ask(Pending::Auth(credentials)),
            Step::Failed(r) => self.reject(r),
        }
    }

    /// Takes the client's HELO or EHLO name and answers it.
    fn greet(&mut self, helo: Helo) {
        if helo.esmtp {
            self.write_ehlo(&helo.name);
        } else {
            let text = format!("{} Hello {}", self.cfg.host_name, helo.name);
            reply::write_line(&mut self.tx, 250, "", text);
        }
        self.helo = Some(helo);
    }

    fn write_ehlo(&mut self, name: &str) {
        let first = format!("{} Hello {name} [{}]", self.cfg.host_name, self.client_ip);
        let size = format!("SIZE {}", self.cfg.max_size);
        let mut lines = vec![
            first.as_str(),
            size.as_str(),
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
        ];
        lines.extend(["ENHANCEDSTATUSCODES", "CHUNKING"]);
        if self.cfg.tls_enabled() && self.tls.is_none() {
            lines.push("STARTTLS");
        }
        let auth = format!("AUTH {}", crate::sasl::MECHANISMS);
        if self.auth_offered() && self.auth_user.is_none() {
            lines.push(&auth);
        }
        if self.trusted {
            lines.push("XCLIENT ADDR NAME HELO PROTO PORT LOGIN DESTADDR DESTPORT");
        }
        lines.push("HELP");
        reply::write_multiline(&mut self.tx, 250, lines);
    }

    /// `MAIL FROM:` (RFC 5321 §4.1.1.2), with SIZE checked against the limit (RFC 1870),
    /// then against the destination ([`Check::Sender`]).
    fn mail(&mut self, from: ReversePath<'_>, params: MailParams) {
        if self.helo.is_none() {
            return self.reject(reply::NEED_HELO);
        }
        if self.cfg.auth == AuthMode::File && self.auth_user.is_none() {
            return self.reject(reply::AUTH_REQUIRED);
        }
        if !matches!(self.txn, Txn::Idle) {
            return self.reject(reply::NESTED_MAIL);
        }
        if params.size.is_some_and(|s| s > self.cfg.max_size) {
            return self.reject(reply::TOO_BIG);
        }
        if matches!(&from, ReversePath::Mailbox(m) if m.is_utf8()) && !params.smtputf8 {
            return self.reject(reply::NEED_SMTPUTF8);
        }
        // The time of this command, not of the accept: on a reused connection ids (and
        // the S3 keys made of them) still follow the order in which messages began.
        let Origin {
            id: conn_id,
            wall: accepted,
            start,
            instance,
            ..
        } = self.origin;
        let wall = accepted + self.last_input.saturating_duration_since(start);
        let id = QueueId::new(wall, instance, conn_id, self.messages_started);
        self.messages_started += 1;
        self.ask(Pending::Mail(Box::new(Mail {
            id,
            from: from.into_owned(),
            params,
            rcpts: Vec::new(),
        })));
    }

    /// `RCPT TO:` (RFC 5321 §4.1.1.3): the domain must be one we accept mail for, then
    /// the destination checks the mailbox ([`Check::Recipient`]).
    fn rcpt(&mut self, to: ForwardPath<'_>) {
        let txn = match &self.txn {
            Txn::Open(mail) => mail,
            Txn::Text(_) | Txn::Delivering(_) => return self.reject(IN_TRANSACTION),
            Txn::Idle => return self.reject(reply::NEED_MAIL),
        };
        let named = || Some(to.to_string());
        if let Some(blocked) = self.dnsbl_refusal() {
            return self.reject_because(blocked, named(), None);
        }
        if txn.rcpts.len() >= self.cfg.max_recipients {
            return self.reject_because(reply::TOO_MANY_RCPTS, named(), None);
        }
        // RFC 5321 §4.5.1: postmaster at the server's own name is always accepted, and
        // is the same mailbox as `<Postmaster>`.
        let to = match to {
            ForwardPath::Mailbox(m)
                if m.domain.eq_ignore_ascii_case(&self.cfg.host_name)
                    && m.local_part_unquoted().eq_ignore_ascii_case("postmaster") =>
            {
                ForwardPath::Postmaster
            }
            other => other,
        };
        if let ForwardPath::Mailbox(m) = &to {
            if m.is_utf8() && !txn.params.smtputf8 {
                return self.reject_because(reply::NEED_SMTPUTF8, Some(to.to_string()), None);
            }
            if !self.cfg.allowed_hosts.allows(&m.domain) {
                return self.reject_because(reply::RELAY_DENIED, Some(to.to_string()), None);
            }
        }
        match maildir::recipient(&to, &self.cfg) {
            Ok(r) => self.ask(Pending::Rcpt(r)),
            Err(maildir::MapError::TooLong) => {
                self.reject_because(reply::MAILBOX_TOO_LONG, Some(to.to_string()), None);
            }
        }
    }

    /// Waits for the answer to `pending`'s question before answering its command.
    fn ask(&mut self, pending: Pending) {
        self.pending = Some(Box::new(pending));
        self.owed.check = true;
        self.mode = Mode::Checking;
    }

    /// The question the waiting command asks.
    pub(super) fn pending_check(&self) -> Option<Check<'_>> {
        Some(match self.pending.as_deref()? {
            Pending::Mail(txn) => Check::Sender {
                from: &txn.from,
                params: &txn.params,
            },
            Pending::Rcpt(recipient) => Check::Recipient {
                from: self.txn.id_and_sender()?.1,
                recipient,
            },
            Pending::Client { ip, .. } => Check::Client(*ip),
            Pending::Helo(helo) => Check::Helo { name: &helo.name },
            Pending::Auth(c) => Check::Auth {
                user: &c.user,
                password: &c.password,
            },
        })
    }

    /// Finishes the command that waited for its check.
    pub(super) fn checked(&mut self, pending: Pending, result: Result<(), DeliveryError>) {
        match (pending, result) {
            (Pending::Mail(mail), Ok(())) => {
                self.txn = Txn::Open(mail);
                self.reply(reply::MAIL_OK);
            }
            (Pending::Mail(mail), Err(e)) => {
                // The event names the sender refused: set the transaction aside for it
                // (the destination holds none, so it is never aborted).
                self.txn = Txn::Open(mail);
                let r = e.reply_at(crate::Stage::Mail);
                self.reject_because(r, None, e.cause());
                self.end_transaction();
            }
            (Pending::Rcpt(r), Ok(())) => {
                if let Txn::Open(mail) = &mut self.txn {
                    mail.rcpts.push(r);
                }
                self.reply(reply::RCPT_OK);
            }
            (Pending::Rcpt(r), Err(e)) => {
                let reply = e.reply_at(crate::Stage::Rcpt);
                self.reject_because(reply, Some(format!("<{}>", r.address)), e.cause());
            }
            (Pending::Auth(c), result) => {
                let user = crate::syntax::escape_for_log(c.user.as_bytes());
                self.events.push_back(Event::Auth {
                    user,
                    ok: result.is_ok(),
                });
                match result {
                    Ok(()) => {
                        self.auth_user = Some(c.user.into_boxed_str());
                        self.reply(reply::AUTH_OK);
                    }
                    Err(e) => self.reject(e.reply_at(crate::Stage::Mail)),
                }
            }
            (
                Pending::Client {
                    ip,
                    name,
                    helo,
                    login,
                },
                Ok(()),
            ) => {
                // Trust follows the address: the client behind a proxy cannot send
                // XCLIENT again through it to claim yet another identity.
                self.trusted = self.cfg.is_trusted_proxy(ip);
                self.client_ip = ip;
                self.client_name = name;
                self.auth_user = login;
                // The session starts over as the client: with its HELO name if the proxy
                // gave one (so MAIL may follow at once), else waiting for HELO/EHLO.
                self.helo = helo;
                self.write_greeting();
            }
            (Pending::Helo(helo), Ok(())) => self.greet(helo),
            (Pending::Helo(_), Err(e)) => {
                // A client a filter refuses by its name: the session ends, politely.
                let r = e.reply_at(crate::Stage::Mail);
                self.reject_because(r, None, e.cause());
                self.reset_transaction();
                self.mode = Mode::Closed(CloseReason::Refused);
            }
            (Pending::Client { .. }, Err(e)) if matches!(e.kind(), crate::ErrorKind::Reply(_)) => {
                // The DNS blocklists blocked the client XCLIENT named: the session ends.
                let r = e.reply_at(crate::Stage::Mail);
                self.reject_because(r, None, e.cause());
                self.reset_transaction();
                self.mode = Mode::Closed(CloseReason::Refused);
            }
            (Pending::Client { .. }, Err(_)) => {
                self.stats.refusals += 1;
                reply::write_client_limit(&mut self.tx, &self.cfg.host_name);
                self.reset_transaction();
                self.mode = Mode::Closed(CloseReason::ClientLimit);
            }
        }
    }

    /// `DATA` (RFC 5321 §4.1.1.4).
    fn data(&mut self) {
        match &self.txn {
            Txn::Idle => return self.reject(reply::NEED_MAIL),
            Txn::Text(_) | Txn::Delivering(_) => return self.reject(reply::DATA_AFTER_BDAT),
            Txn::Open(mail) if mail.rcpts.is_empty() => return self.reject(reply::NEED_RCPT),
            Txn::Open(_) => {}
        }
        let Txn::Open(mail) = std::mem::take(&mut self.txn) else {
            return;
        };
        self.reply(reply::START_DATA);
        self.begin_text(*mail, true);
        self.mode = Mode::Data;
    }

    /// `BDAT` (RFC 3030). The chunk's octets are read even when the command is refused,
    /// since they cannot be told apart from commands otherwise.
    fn bdat(&mut self, size: u64, last: bool) {
        let refused = match &self.txn {
            Txn::Idle => Some(&reply::NEED_MAIL),
            Txn::Open(mail) if mail.rcpts.is_empty() => Some(&reply::NEED_RCPT),
            _ => None,
        };
        if refused.is_none() {
            if matches!(self.txn, Txn::Open(_))
                && let Txn::Open(mail) = std::mem::take(&mut self.txn)
            {
                self.begin_text(*mail, false);
            }
            let max = self.cfg.max_size;
            if let Txn::Text(t) = &mut self.txn
                && t.body.size.saturating_add(size) > max
            {
                t.body.declared_too_big = true;
                self.refuse_text();
            }
        }
        self.mode = Mode::Chunk {
            remaining: size,
            last,
            refused,
        };
    }

    /// `STARTTLS` (RFC 3207).
    fn starttls(&mut self) {
        if self.tls.is_some() {
            return self.reject(reply::TLS_ACTIVE);
        }
        if !self.cfg.tls_enabled() {
            return self.reject(reply::NO_TLS);
        }
        self.reset_transaction();
        self.reply(reply::READY_TLS);
        self.mode = Mode::Handshake;
    }

    /// `XCLIENT` (Postfix's XCLIENT_README), from trusted proxies only. The session starts
    /// over with the new client identity and a fresh greeting.
    fn xclient(&mut self, attrs: &[(&str, &str)]) {
        if !self.trusted {
            return self.reject(reply::XCLIENT_DENIED);
        }
        if !matches!(self.txn, Txn::Idle) {
            return self.reject(IN_TRANSACTION);
        }
        let (mut ip, mut name) = (self.client_ip, self.client_name.clone());
        let mut login = self.auth_user.clone();
        let (mut helo, mut esmtp) = (None, true);
        for (attr, value) in attrs {
            let Some(value) = decode_xtext(value) else {
                return self.reject(reply::XCLIENT_BAD);
            };
            let unavailable = value.eq_ignore_ascii_case("[UNAVAILABLE]")
                || value.eq_ignore_ascii_case("[TEMPUNAVAIL]");
            match attr.to_ascii_uppercase().as_str() {
                "ADDR" if unavailable => {}
                "ADDR" => {
                    let text = value
                        .get(..5)
                        .filter(|p| p.eq_ignore_ascii_case("IPV6:"))
                        .map_or(&*value, |_| &value[5..]);
                    match text.parse::<IpAddr>() {
                        Ok(a) => ip = crate::policy::canonical(a),
                        Err(_) => return self.reject(reply::XCLIENT_BAD),
                    }
                }
                "NAME" if unavailable => name = None,
                "NAME" => match crate::syntax::domain(&value) {
                    Ok(("", _)) => name = Some(value.into()),
                    _ => return self.reject(reply::XCLIENT_BAD),
                },
                "HELO" if unavailable => helo = None,
                "HELO" => match crate::syntax::helo_name(&value) {
                    Ok(("", h)) => helo = Some(h.into()),
                    _ => return self.reject(reply::XCLIENT_BAD),
                },
                "PROTO" if value.eq_ignore_ascii_case("SMTP") => esmtp = false,
                "PROTO" if value.eq_ignore_ascii_case("ESMTP") => esmtp = true,
                "PROTO" => return self.reject(reply::XCLIENT_BAD),
                // The user the proxy authenticated (nginx's mail proxy sends it).
                "LOGIN" if unavailable => login = None,
                "LOGIN" if !value.contains(char::is_control) => login = Some(value.into()),
                "LOGIN" => return self.reject(reply::XCLIENT_BAD),
                "PORT" | "DESTADDR" | "DESTPORT" => {}
                _ => return self.reject(XCLIENT_NAME),
            }
        }
        let helo = helo.map(|name| Helo { name, esmtp });
        let pending = Pending::Client {
            ip,
            name,
            helo,
            login,
        };
        if ip == self.client_ip {
            self.checked(pending, Ok(()));
        } else {
            // A new address counts against its own per-client limit.
            self.ask(pending);
        }
    }
}

/// A command line as [`Event::Command`] logs it: escaped, and AUTH's initial response
/// (a password, in PLAIN) left out.
fn log_line(bytes: &[u8]) -> String {
    let is_auth = bytes
        .get(..5)
        .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "));
    match bytes.iter().rposition(|&b| b == b' ') {
        Some(at) if is_auth && at > 4 => {
            format!("{} <hidden>", crate::syntax::escape_for_log(&bytes[..at]))
        }
        _ => crate::syntax::escape_for_log(bytes),
    }
}
