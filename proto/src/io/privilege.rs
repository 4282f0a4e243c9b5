//! Dropping root after the listeners are bound and the key files read (`SGID`, `GUID`).

use nix::unistd::{Gid, Group, Uid, User, setgid, setgroups, setuid};

use crate::config::{Config, ConfigError};

fn fail(key: &str, message: String) -> ConfigError {
    ConfigError {
        key: key.into(),
        message,
    }
}

/// Switches to `SGID`/`GUID` (numbers or names): supplementary groups, then the group,
/// then the user, and checks that root cannot be regained. Without the keys, or when
/// already running as them, it does nothing. Any failure stops startup.
pub(crate) fn drop_privileges(cfg: &Config) -> Result<(), ConfigError> {
    let user = cfg.user.as_deref().map(resolve_user).transpose()?;
    let group = match (cfg.group.as_deref(), &user) {
        (Some(g), _) => Some(resolve_group(g)?),
        (None, Some(u)) if Uid::effective().is_root() => Some(u.gid),
        _ => None,
    };
    if let Some(gid) = group {
        if Uid::effective().is_root() {
            setgroups(&[gid])
                .map_err(|e| fail("SGID", format!("cannot set supplementary groups: {e}")))?;
        }
        if Gid::current() != gid || Gid::effective() != gid {
            setgid(gid).map_err(|e| fail("SGID", format!("cannot switch to group {gid}: {e}")))?;
        }
    }
    if let Some(u) = user {
        if Uid::current() != u.uid || Uid::effective() != u.uid {
            setuid(u.uid)
                .map_err(|e| fail("GUID", format!("cannot switch to user {}: {e}", u.uid)))?;
        }
        if !u.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
            return Err(fail(
                "GUID",
                "root could be regained after dropping privileges".into(),
            ));
        }
        tracing::info!(uid = %u.uid, gid = %Gid::effective(), "dropped privileges");
    }
    Ok(())
}

/// The user's id and primary group.
struct Account {
    uid: Uid,
    gid: Gid,
}

fn resolve_user(spec: &str) -> Result<Account, ConfigError> {
    let found = match spec.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n))
            .map(|u| u.map(|u| (u.uid, u.gid)))
            .map(|u| {
                // A numeric id needs no passwd entry; its group is then its own number.
                Some(u.unwrap_or_else(|| (Uid::from_raw(n), Gid::from_raw(n))))
            }),
        Err(_) => User::from_name(spec).map(|u| u.map(|u| (u.uid, u.gid))),
    };
    match found {
        Ok(Some((uid, gid))) => Ok(Account { uid, gid }),
        Ok(None) => Err(fail("GUID", format!("no such user {spec:?}"))),
        Err(e) => Err(fail("GUID", format!("cannot look up user {spec:?}: {e}"))),
    }
}

fn resolve_group(spec: &str) -> Result<Gid, ConfigError> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(Gid::from_raw(n));
    }
    match Group::from_name(spec) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(fail("SGID", format!("no such group {spec:?}"))),
        Err(e) => Err(fail("SGID", format!("cannot look up group {spec:?}: {e}"))),
    }
}
