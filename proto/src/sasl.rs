//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, as a pure
//! exchange: the connection feeds it the client's response lines and sends the
//! challenges it gives, until it has the user name and password to check. Also the
//! `GSMTP_AUTH_FILE` format: `user:hash` lines, bcrypt or Argon2 only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::reply::{self, Reply};

/// The mechanisms offered, as EHLO lists them.
pub const MECHANISMS: &str = "PLAIN LOGIN";

/// LOGIN's first challenge, `Username:` in base64.
const USERNAME: &str = "VXNlcm5hbWU6";
/// LOGIN's second challenge, `Password:` in base64.
const PASSWORD: &str = "UGFzc3dvcmQ6";

/// Whether `s` may be a SASL response on the wire: a lone `=` (empty), or base64 text.
pub fn is_response(s: &str) -> bool {
    if s == "=" {
        return true;
    }
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Decodes a response: `=` is empty, anything else must be padded base64.
fn decode(s: &str) -> Option<Vec<u8>> {
    if s == "=" {
        return Some(Vec::new());
    }
    if !is_response(s) {
        return None;
    }
    STANDARD.decode(s).ok()
}

/// What the client claims: a user name and a password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user (PLAIN's authentication identity, LOGIN's user name), UTF-8.
    pub user: String,
    /// The password, as sent.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The next step of an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <challenge>` and wait for the next response line.
    Challenge(&'static str),
    /// The exchange is complete: check these.
    Done(Credentials),
    /// The exchange failed: send this reply.
    Failed(Reply),
}

/// An exchange in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// PLAIN, waiting for its one response.
    Plain,
    /// LOGIN, waiting for the user name.
    LoginUser,
    /// LOGIN, waiting for the password of this user.
    LoginPassword(String),
}

impl Exchange {
    /// Starts `AUTH <mechanism> [initial]`. `Err` is the reply for a mechanism we do not
    /// offer; else the exchange (if it goes on) and its first step.
    pub fn start(mechanism: &str, initial: Option<&str>) -> (Option<Self>, Step) {
        let mut ex = if mechanism.eq_ignore_ascii_case("PLAIN") {
            Self::Plain
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            Self::LoginUser
        } else {
            return (None, Step::Failed(reply::AUTH_MECHANISM));
        };
        match initial {
            Some(i) => {
                let step = ex.respond(i.as_bytes());
                (matches!(step, Step::Challenge(_)).then_some(ex), step)
            }
            None => {
                let challenge = match ex {
                    Self::Plain => "",
                    _ => USERNAME,
                };
                (Some(ex), Step::Challenge(challenge))
            }
        }
    }

    /// Takes the client's next response line (without its CRLF).
    pub fn respond(&mut self, line: &[u8]) -> Step {
        if line == b"*" {
            return Step::Failed(reply::AUTH_CANCELLED);
        }
        let Some(data) = std::str::from_utf8(line).ok().and_then(decode) else {
            return Step::Failed(reply::AUTH_BAD_RESPONSE);
        };
        match std::mem::replace(self, Self::Plain) {
            Self::Plain => match plain(&data) {
                Some(c) => Step::Done(c),
                None => Step::Failed(reply::AUTH_BAD_RESPONSE),
            },
            Self::LoginUser => match String::from_utf8(data) {
                Ok(user) if !user.is_empty() && !user.contains(char::is_control) => {
                    *self = Self::LoginPassword(user);
                    Step::Challenge(PASSWORD)
                }
                _ => Step::Failed(reply::AUTH_BAD_RESPONSE),
            },
            Self::LoginPassword(user) => Step::Done(Credentials {
                user,
                password: data,
            }),
        }
    }
}

/// PLAIN's message: `[authzid] NUL authcid NUL passwd`. An authorization identity other
/// than the user's own is refused: nobody may act for another here.
fn plain(data: &[u8]) -> Option<Credentials> {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (authz, authc, password) = (parts.next()?, parts.next()?, parts.next()?);
    let user = std::str::from_utf8(authc).ok()?;
    if user.is_empty() || user.contains(char::is_control) || (!authz.is_empty() && authz != authc) {
        return None;
    }
    Some(Credentials {
        user: user.to_string(),
        password: password.to_vec(),
    })
}

/// How a password in `GSMTP_AUTH_FILE` is hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `$2a$`, `$2b$`, `$2x$` or `$2y$` (what `htpasswd -B` writes).
    Bcrypt,
    /// An Argon2 PHC string, `$argon2id$v=19$m=…`.
    Argon2,
}

/// One line of `GSMTP_AUTH_FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub name: String,
    /// The hash, as written.
    pub hash: String,
    /// Its scheme.
    pub scheme: Scheme,
}

/// Parses `GSMTP_AUTH_FILE`: `user:hash` per line; blank lines and `#` comments are
/// skipped. Anything but a bcrypt or Argon2 hash (a plain-text password above all) is
/// an error naming the line, as is a user given twice.
pub fn parse_users(text: &str) -> Result<Vec<User>, String> {
    let mut users: Vec<User> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = n + 1;
        let Some((name, hash)) = line.split_once(':') else {
            return Err(format!("line {n}: expected user:hash"));
        };
        let scheme = if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| hash.starts_with(p))
            && hash.len() == 60
        {
            Scheme::Bcrypt
        } else if hash.starts_with("$argon2") {
            Scheme::Argon2
        } else {
            return Err(format!(
                "line {n}: the password of {name:?} is not a bcrypt or Argon2 hash \
                 (plain-text passwords are refused; make one with `htpasswd -nB {name}`)"
            ));
        };
        if name.is_empty() || users.iter().any(|u| u.name == name) {
            return Err(format!("line {n}: empty or repeated user name {name:?}"));
        }
        users.push(User {
            name: name.to_string(),
            hash: hash.to_string(),
            scheme,
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let resp = b64(b"\0alice\0secret");
        let (ex, step) = Exchange::start("plain", Some(&resp));
        assert!(ex.is_none());
        assert_eq!(
            step,
            Step::Done(Credentials {
                user: "alice".into(),
                password: b"secret".to_vec()
            })
        );
        let (ex, step) = Exchange::start("PLAIN", None);
        assert_eq!(step, Step::Challenge(""));
        let step = ex.unwrap().respond(b64(b"alice\0alice\0pw").as_bytes());
        assert!(matches!(step, Step::Done(c) if c.user == "alice" && c.password == b"pw"));
    }

    #[test]
    fn login_takes_two_steps() {
        let (ex, step) = Exchange::start("LOGIN", None);
        assert_eq!(step, Step::Challenge(USERNAME));
        let mut ex = ex.unwrap();
        assert_eq!(
            ex.respond(b64(b"bob").as_bytes()),
            Step::Challenge(PASSWORD)
        );
        let step = ex.respond(b64(b"hunter2").as_bytes());
        assert!(matches!(step, Step::Done(c) if c.user == "bob" && c.password == b"hunter2"));
        // The user name as the initial response, as some clients send it.
        let (ex, step) = Exchange::start("LOGIN", Some(&b64(b"bob")));
        assert_eq!(step, Step::Challenge(PASSWORD));
        assert_eq!(ex, Some(Exchange::LoginPassword("bob".into())));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            Exchange::start("CRAM-MD5", None).1,
            Step::Failed(reply::AUTH_MECHANISM)
        );
        let bad = [
            b64(b"other\0alice\0pw"),  // acting for another
            b64(b"\0\0pw"),            // no user
            b64(b"alice-no-nul"),      // not PLAIN's shape
            "not base64!".to_string(), // not base64
        ];
        for resp in bad {
            let (_, step) = Exchange::start("PLAIN", None);
            assert_eq!(step, Step::Challenge(""));
            let step = Exchange::Plain.respond(resp.as_bytes());
            assert_eq!(step, Step::Failed(reply::AUTH_BAD_RESPONSE), "{resp}");
        }
        assert_eq!(
            Exchange::LoginUser.respond(b"*"),
            Step::Failed(reply::AUTH_CANCELLED)
        );
    }

    #[test]
    fn response_syntax() {
        for ok in ["=", "AGEAYg==", "YQ==", "YWI=", "YWJj"] {
            assert!(is_response(ok), "{ok}");
        }
        for bad in ["", "==", "a===", "a b", "a*", "=a"] {
            assert!(!is_response(bad), "{bad}");
        }
    }

    #[test]
    fn users_file() {
        let bcrypt = "$2y$05$abcdefghijklmnopqrstuu5Q7gD0F7fY1lD6zVbq3yY6h2Uo1xG3a";
        assert_eq!(bcrypt.len(), 60);
        let text = format!(
            "# comment\n\nalice:{bcrypt}\nbob:$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\n"
        );
        let users = parse_users(&text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].scheme, Scheme::Bcrypt);
        assert_eq!(users[1].scheme, Scheme::Argon2);
        let err = parse_users("carol:secret\n").unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("plain-text"),
            "{err}"
        );
        assert!(parse_users(&format!("a:{bcrypt}\na:{bcrypt}")).is_err());
        assert!(parse_users("no-colon").is_err());
    }
}
