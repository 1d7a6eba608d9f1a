//! CSRF tokens for every POST: HMAC-SHA256 of the DA session, the user name
//! and the level under a server secret (`<state_dir>/csrf.key`, 0600,
//! created on first use). DA applies no CSRF protection of its own to plugin
//! POSTs, and a token bound to the session cannot be replayed by another
//! user or from another login.

use crate::access::Level;
use crate::apply::fsx;
use crate::config::Config;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::PathBuf;

const KEY_FILE: &str = "csrf.key";
const KEY_LEN: usize = 32;

fn key_path(cfg: &Config) -> PathBuf {
    crate::hooks::state_dir(cfg).join(KEY_FILE)
}

/// Random bytes from the kernel (no userspace RNG to seed or audit).
pub fn random_bytes(n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(b)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The server secret, created 0600 with O_EXCL so two first requests agree.
fn key(cfg: &Config) -> Result<Vec<u8>, String> {
    let path = key_path(cfg);
    let read = |p: &PathBuf| -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(p) {
            Ok(k) if k.len() == KEY_LEN => Ok(Some(k)),
            Ok(_) => Err(format!("{}: not a {KEY_LEN}-byte key", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    };
    if let Some(k) = read(&path)? {
        return Ok(k);
    }
    fsx::ensure_private_dir(&crate::hooks::state_dir(cfg))?;
    let k = random_bytes(KEY_LEN)?;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| format!("create {}: {e}", tmp.display()))?;
        f.write_all(&k)
            .map_err(|e| format!("write {}: {e}", tmp.display()))?;
        let _ = f.sync_all();
    }
    // link(2) fails if another request won the race: use its key then.
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(k),
        Err(_) => read(&path)?.ok_or_else(|| format!("{}: cannot create", path.display())),
    }
}

fn mac(cfg: &Config, session: &str, username: &str, level: Level) -> Result<Hmac<Sha256>, String> {
    let k = key(cfg)?;
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&k).map_err(|e| e.to_string())?;
    // NUL separators: no two (session, user, level) triples share a message.
    for part in ["fpm_doctor-csrf-v1", session, username, level.as_str()] {
        m.update(part.as_bytes());
        m.update(&[0]);
    }
    Ok(m)
}

/// The token for forms on this page. `None` without a session: such a
/// caller gets no form that could mutate anything.
pub fn token(cfg: &Config, session: &str, username: &str, level: Level) -> Result<Option<String>, String> {
    if session.is_empty() {
        return Ok(None);
    }
    Ok(Some(hex(&mac(cfg, session, username, level)?
        .finalize()
        .into_bytes())))
}

/// Constant-time check of a submitted token.
pub fn verify(cfg: &Config, session: &str, username: &str, level: Level, submitted: &str) -> bool {
    if session.is_empty() || submitted.len() != 64 {
        return false;
    }
    let Some(bytes) = (0..32)
        .map(|i| u8::from_str_radix(submitted.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    match mac(cfg, session, username, level) {
        Ok(m) => m.verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_bound_to_session_user_and_level() {
        let t = tempfile::tempdir().unwrap();
        let cfg = Config::load(None, Some(t.path())).unwrap();
        let tok = token(&cfg, "s1", "alice", Level::User).unwrap().unwrap();
        assert!(verify(&cfg, "s1", "alice", Level::User, &tok));
        assert!(!verify(&cfg, "s2", "alice", Level::User, &tok));
        assert!(!verify(&cfg, "s1", "bob", Level::User, &tok));
        assert!(!verify(&cfg, "s1", "alice", Level::Admin, &tok));
        assert!(!verify(&cfg, "", "alice", Level::User, &tok));
        assert!(token(&cfg, "", "alice", Level::User).unwrap().is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key_path(&cfg)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
