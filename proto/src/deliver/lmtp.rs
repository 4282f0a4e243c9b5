//! The pure half of `GSMTP_STORAGE=lmtp`: reading an LMTP server's replies, dot-stuffing
//! the text, and what its answers after the final dot mean for the one SMTP reply.

use super::refusal;
use crate::delivery::DeliveryError;
use crate::reply::parse_status;
use crate::syntax::{Body, MailParams, ReversePath};

/// What an LMTP server offered in its LHLO reply, of what we may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `SIZE` (RFC 1870).
    pub size: bool,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub utf8: bool,
}

impl Capabilities {
    /// Reads the lines of an LHLO reply (`250-SIZE`, `250 8BITMIME`, ...).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut caps = Self::default();
        for line in lines {
            let word = line.get(4..).unwrap_or("").split(' ').next().unwrap_or("");
            match word.to_ascii_uppercase().as_str() {
                "SIZE" => caps.size = true,
                "8BITMIME" => caps.eight_bit = true,
                "SMTPUTF8" => caps.utf8 = true,
                _ => {}
            }
        }
        caps
    }

    /// The MAIL command for `from`, with the parameters the server offered.
    pub fn mail_command(&self, from: &ReversePath<'_>, params: &MailParams) -> String {
        let mut cmd = format!("MAIL FROM:{from}");
        if let (true, Some(n)) = (self.size, params.size) {
            cmd.push_str(&format!(" SIZE={n}"));
        }
        if self.eight_bit && params.body == Some(Body::EightBitMime) {
            cmd.push_str(" BODY=8BITMIME");
        }
        if self.utf8 && params.smtputf8 {
            cmd.push_str(" SMTPUTF8");
        }
        cmd.push_str("\r\n");
        cmd
    }
}

/// One reply read from an LMTP (or SMTP) server: its code and the text of its last line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerReply {
    /// The three-digit code.
    pub code: u16,
    /// The enhanced status code at the start of the last line, if there is one.
    pub status: String,
    /// The rest of the last line.
    pub text: String,
}

impl ServerReply {
    /// As a [`DeliveryError`]: the server's own reply when it refused (`4xx`, `5xx`);
    /// anything else it could say here is a protocol fault, `451`.
    pub fn refusal(&self) -> DeliveryError {
        refusal(
            self.code,
            &self.status,
            &self.text,
            "Error: refused by the delivery agent",
        )
    }

    /// Whether it is a positive completion (`2xx`).
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// The longest reply line accepted from a server.
pub const MAX_REPLY_LINE: usize = 2048;
/// The most lines accepted in one reply.
pub const MAX_REPLY_LINES: usize = 100;

/// Reads one reply from the start of `buf`: `Ok(Some((reply, consumed)))`, `Ok(None)`
/// until it is complete, or `Err(())` for bytes that are not a reply (or a reply too
/// long), after which the connection is not to be trusted.
#[allow(clippy::result_unit_err)]
pub fn parse_reply(buf: &[u8]) -> Result<Option<(ServerReply, usize)>, ()> {
    let mut at = 0;
    for _ in 0..MAX_REPLY_LINES {
        let Some(lf) = memchr::memchr(b'\n', &buf[at..]) else {
            return if buf.len() - at > MAX_REPLY_LINE {
                Err(())
            } else {
                Ok(None)
            };
        };
        let line = &buf[at..at + lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += lf + 1;
        if line.len() < 3
            || line.len() > MAX_REPLY_LINE
            || !line[..3].iter().all(u8::is_ascii_digit)
        {
            return Err(());
        }
        let code = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        match line.get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => {
                let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default());
                let (status, text) = match text.split_once(' ') {
                    Some((s, t)) if parse_status(s).is_some() => (s.to_string(), t.to_string()),
                    _ if parse_status(&text).is_some() => (text.to_string(), String::new()),
                    _ => (String::new(), text.into_owned()),
                };
                return Ok(Some((ServerReply { code, status, text }, at)));
            }
            Some(_) => return Err(()),
        }
    }
    Err(())
}

/// Dot-stuffing for text sent after DATA, across pieces: a `.` at the start of a line is
/// doubled (RFC 5321 §4.5.2).
#[derive(Clone, Copy, Debug)]
pub struct DotStuffer {
    at_line_start: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self {
            at_line_start: true,
        }
    }
}

impl DotStuffer {
    /// Appends `bytes`, stuffed, to `out`.
    pub fn stuff(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
        }
    }

    /// The end of the text: a CRLF if the text did not end with one (a BDAT message
    /// may not), then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.at_line_start = true;
    }
}

/// What an LMTP server's replies after the final dot (one per accepted recipient, RFC
/// 2033 §4.2) mean for the single SMTP reply: all `2xx` is committed; all refusals with
/// the same reply is that reply; a mix (some copies delivered, some not) is `451 4.3.0`,
/// so that no copy is lost and no `250` claims a copy that was not delivered, at the
/// price of a duplicate for the recipients that got theirs when the client retries.
pub fn outcome(replies: &[ServerReply]) -> Result<(), DeliveryError> {
    if replies.iter().all(ServerReply::is_ok) {
        return Ok(());
    }
    let first = &replies[0];
    let alike = replies
        .iter()
        .all(|r| !r.is_ok() && r.code == first.code && r.status == first.status);
    if alike {
        return Err(first.refusal());
    }
    Err(refusal(
        451,
        "4.3.0",
        "",
        "Error: delivered to some recipients only, try again later",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyBuf;

    #[test]
    fn capabilities_and_mail() {
        let caps =
            Capabilities::parse(["250-mx", "250-PIPELINING", "250-size 100", "250 8BITMIME"]);
        assert_eq!(
            caps,
            Capabilities {
                size: true,
                eight_bit: true,
                utf8: false
            }
        );
        let (_, from) = crate::syntax::reverse_path("<a@b.example>").unwrap();
        let params = MailParams {
            size: Some(42),
            body: Some(Body::EightBitMime),
            smtputf8: true,
        };
        assert_eq!(
            caps.mail_command(&from, &params),
            "MAIL FROM:<a@b.example> SIZE=42 BODY=8BITMIME\r\n"
        );
        assert_eq!(
            Capabilities::default().mail_command(&from, &params),
            "MAIL FROM:<a@b.example>\r\n"
        );
    }

    #[test]
    fn server_replies() {
        let (r, n) = parse_reply(b"250-first\r\n250 2.1.5 Ok\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.code, r.status.as_str(), r.text.as_str(), n),
            (250, "2.1.5", "Ok", 25)
        );
        assert_eq!(parse_reply(b"250-first\r\n250 2.1").unwrap(), None);
        let (r, _) = parse_reply(b"550 5.1.1 <u@x> User doesn't exist\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.refusal(),
            DeliveryError::reply(
                ReplyBuf::new(550, "5.1.1", "<u@x> User doesn't exist", "").unwrap()
            )
        );
        let (r, _) = parse_reply(b"354\r\n").unwrap().unwrap();
        assert_eq!((r.code, r.text.as_str()), (354, ""));
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_reply(b"25\r\n").is_err());
        assert!(parse_reply(&vec![b'2'; 5000]).is_err());
    }

    #[test]
    fn stuffing_across_pieces() {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for piece in [&b".a\r"[..], b"\n", b".", b"b\r\n..c\r\n", b"end"] {
            s.stuff(piece, &mut out);
        }
        s.finish(&mut out);
        assert_eq!(out, b"..a\r\n..b\r\n...c\r\nend\r\n.\r\n");
        let mut out = Vec::new();
        let mut s = DotStuffer::default();
        s.stuff(b"x\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"x\r\n.\r\n");
    }

    #[test]
    fn lmtp_outcomes() {
        let ok = ServerReply {
            code: 250,
            status: "2.0.0".into(),
            text: "ok".into(),
        };
        let full = ServerReply {
            code: 452,
            status: "4.2.2".into(),
            text: "full".into(),
        };
        let gone = ServerReply {
            code: 550,
            status: "5.1.1".into(),
            text: "gone".into(),
        };
        assert_eq!(outcome(&[ok.clone(), ok.clone()]), Ok(()));
        let r = |e: DeliveryError| e.reply_at(crate::Stage::Data).to_string();
        assert_eq!(
            r(outcome(&[full.clone(), full.clone()]).unwrap_err()),
            "452 4.2.2 full"
        );
        assert_eq!(
            r(outcome(std::slice::from_ref(&gone)).unwrap_err()),
            "550 5.1.1 gone"
        );
        assert!(r(outcome(&[ok, gone.clone()]).unwrap_err()).starts_with("451 4.3.0 "));
        assert!(r(outcome(&[full, gone]).unwrap_err()).starts_with("451 4.3.0 "));
    }
}
