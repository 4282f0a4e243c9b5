//! The password check of `GSMTP_AUTH`: anyone (`accept-any`), or the users of
//! `GSMTP_AUTH_FILE` with their bcrypt or Argon2 hashes (`file`), read at start and at
//! each reload. A hash takes tens of milliseconds of CPU by design, so it is computed on
//! the runtime's blocking pool, never on a session's thread.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordVerifier};

use super::runtime::Runtime;
use crate::config::{AuthMode, Config, ConfigError};
use crate::delivery::DeliveryError;
use crate::reply::{self, ReplyBuf};
use crate::sasl::{Scheme, User};

/// Who may log in.
#[derive(Debug)]
pub(crate) enum Logins {
    /// Anyone, with any password.
    AnyOne,
    /// The users of `GSMTP_AUTH_FILE`, by name.
    File(Arc<HashMap<String, User>>),
}

impl Logins {
    /// What `cfg` asks for: `None` when AUTH is off. A file that cannot be read, or holds
    /// a line that is not `user:hash` with a bcrypt or Argon2 hash, is an error naming
    /// `GSMTP_AUTH_FILE`.
    pub(crate) fn open(cfg: &Config) -> Result<Option<Self>, ConfigError> {
        let path = match (cfg.auth, &cfg.auth_file) {
            (AuthMode::Off, _) => return Ok(None),
            (AuthMode::AcceptAny, _) => return Ok(Some(Self::AnyOne)),
            (AuthMode::File, Some(path)) => path,
            (AuthMode::File, None) => return Err(error("GSMTP_AUTH=file needs this file")),
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(&format!("cannot read {}: {e}", path.display())))?;
        let users = crate::sasl::parse_users(&text)
            .map_err(|e| error(&format!("{}: {e}", path.display())))?;
        for u in &users {
            if u.scheme == Scheme::Argon2 && PasswordHash::new(&u.hash).is_err() {
                return Err(error(&format!(
                    "{}: the Argon2 hash of {:?} does not parse",
                    path.display(),
                    u.name
                )));
            }
        }
        let users = users.into_iter().map(|u| (u.name.clone(), u)).collect();
        Ok(Some(Self::File(Arc::new(users))))
    }

    /// Checks `user` and `password`: `Ok`, or the reply (`535 5.7.8`).
    pub(crate) async fn check<R: Runtime>(
        &self,
        rt: &R,
        user: &str,
        password: &[u8],
    ) -> Result<(), DeliveryError> {
        let users = match self {
            Self::AnyOne => return Ok(()),
            Self::File(users) => Arc::clone(users),
        };
        let (user, password) = (user.to_string(), password.to_vec());
        let ok = rt
            .unblock(move || match users.get(&user) {
                Some(u) => verify(u.scheme, &u.hash, &password),
                None => {
                    // An unknown user takes as long to refuse as a wrong password: some
                    // user's hash is checked all the same, and the answer is no.
                    if let Some(u) = users.values().next() {
                        let _ = verify(u.scheme, &u.hash, &password);
                    }
                    false
                }
            })
            .await;
        if ok {
            Ok(())
        } else {
            Err(DeliveryError::reply(ReplyBuf::from(reply::AUTH_FAILED)))
        }
    }
}

/// Whether `password` matches `hash`.
fn verify(scheme: Scheme, hash: &str, password: &[u8]) -> bool {
    match scheme {
        Scheme::Bcrypt => bcrypt::verify(password, hash).unwrap_or(false),
        Scheme::Argon2 => PasswordHash::new(hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password, &h)
                .is_ok()
        }),
    }
}

fn error(message: &str) -> ConfigError {
    ConfigError {
        key: "GSMTP_AUTH_FILE".into(),
        message: message.into(),
    }
}
