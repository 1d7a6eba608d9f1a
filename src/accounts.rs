//! passwd/group parsing without NSS.
//!
//! The binary is static (musl): getpwnam() would not see LDAP/sssd and, with
//! `--root`, would answer for the wrong machine anyway. So the account
//! database is read as plain file contents, tolerantly: a broken line must not
//! hide the accounts around it.

use crate::config::Config;
use std::collections::HashMap;

/// One passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The parsed account database. Lookups follow NSS "files" semantics: on
/// duplicate names or ids the first entry wins.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    accounts: Vec<Account>,
    by_name: HashMap<String, usize>,
    by_uid: HashMap<u32, usize>,
    groups: Vec<Group>,
    group_by_name: HashMap<String, usize>,
    group_by_gid: HashMap<u32, usize>,
}

/// Lines worth parsing: without CR, comments, blanks and NIS compat entries
/// (`+name`, `-name`, `+`), which reference accounts we cannot see.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n').filter_map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        match l.iter().find(|b| !b.is_ascii_whitespace()) {
            None | Some(b'#') | Some(b'+') | Some(b'-') => None,
            _ => Some(l),
        }
    })
}

/// An id field: plain decimal only (no sign, no spaces), as glibc writes it.
fn parse_id(field: &[u8]) -> Option<u32> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Names must be valid UTF-8 and free of spaces to be looked up at all.
fn parse_name(field: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(field).ok()?;
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(s.to_string())
}

fn parse_passwd_line(line: &[u8]) -> Option<Account> {
    let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    // name:passwd:uid:gid:gecos:home:shell. Trailing fields may be missing
    // on hand-edited files; more than 7 means we cannot tell where home is.
    if f.len() < 4 || f.len() > 7 {
        return None;
    }
    let text = |i: usize| {
        f.get(i)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    Some(Account {
        name: parse_name(f[0])?,
        uid: parse_id(f[2])?,
        gid: parse_id(f[3])?,
        home: text(5),
        shell: text(6),
    })
}

fn parse_group_line(line: &[u8]) -> Option<Group> {
    let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    // name:passwd:gid:members; a missing member field means no members.
    if f.len() < 3 || f.len() > 4 {
        return None;
    }
    let members = f
        .get(3)
        .map(|m| {
            m.split(|&b| b == b',')
                .filter_map(|n| parse_name(n.trim_ascii()))
                .collect()
        })
        .unwrap_or_default();
    Some(Group {
        name: parse_name(f[0])?,
        gid: parse_id(f[2])?,
        members,
    })
}

impl Accounts {
    /// Parse passwd and group file contents. Never fails: malformed lines,
    /// comments and NIS `+`/`-` lines are skipped.
    pub fn parse(passwd: &[u8], group: &[u8]) -> Accounts {
        let mut a = Accounts::default();
        for acc in lines(passwd).filter_map(parse_passwd_line) {
            let i = a.accounts.len();
            a.by_name.entry(acc.name.clone()).or_insert(i);
            a.by_uid.entry(acc.uid).or_insert(i);
            a.accounts.push(acc);
        }
        for g in lines(group).filter_map(parse_group_line) {
            let i = a.groups.len();
            a.group_by_name.entry(g.name.clone()).or_insert(i);
            a.group_by_gid.entry(g.gid).or_insert(i);
            a.groups.push(g);
        }
        a
    }

    /// Read the configured passwd and group files (root-mapped). A missing
    /// group file only loses supplementary groups, so it is not an error.
    pub fn load(cfg: &Config) -> Result<Accounts, String> {
        let passwd_path = cfg.host(&cfg.paths.passwd);
        let passwd = std::fs::read(&passwd_path).map_err(|e| format!("{}: {e}", passwd_path.display()))?;
        let group = std::fs::read(cfg.host(&cfg.paths.group)).unwrap_or_default();
        Ok(Accounts::parse(&passwd, &group))
    }

    pub fn user(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name).map(|&i| &self.accounts[i])
    }

    pub fn by_uid(&self, uid: u32) -> Option<&Account> {
        self.by_uid.get(&uid).map(|&i| &self.accounts[i])
    }

    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.group_by_gid.get(&gid).map(|&i| self.groups[i].name.as_str())
    }

    pub fn gid_of_group(&self, name: &str) -> Option<u32> {
        self.group_by_name.get(name).map(|&i| self.groups[i].gid)
    }

    /// Primary gid first (if the user exists), then every group listing the
    /// user as a member, without duplicates, in file order.
    pub fn gids_of(&self, user: &str) -> Vec<u32> {
        let mut out: Vec<u32> = self.user(user).map(|a| a.gid).into_iter().collect();
        for g in &self.groups {
            if g.members.iter().any(|m| m == user) && !out.contains(&g.gid) {
                out.push(g.gid);
            }
        }
        out
    }

    /// All accounts in file order (duplicates included).
    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
# a comment\n\
\n\
nginx:x:101:101:nginx user:/nonexistent:/bin/false\r\n\
alice:x:1001:1001::/home/alice:/bin/bash\n\
+bob\n\
+::::::\n\
-carol\n\
broken line without colons\n\
short:x:1002\n\
baduid:x:12a:100::/h:/s\n\
neg:x:-1:100::/h:/s\n\
toomany:x:5:5:g:/h:/s:extra\n\
:x:7:7::/h:/s\n\
nohome:x:1003:1003\n\
alice:x:2000:2000::/dup:/bin/sh\n\
latin\xe9:x:1004:1004::/home/latin:/bin/sh\n\
dave:x:1005:1005:D\xe9ve:/home/d\xe9ve:/bin/sh\n\
big:x:4294967295:4294967295::/:/\n\
huge:x:4294967296:1::/:/\n\
last:x:1006:1006::/home/last:/bin/sh";

    const GROUP: &[u8] = b"root:x:0:\n\
nginx:x:101:\n\
alice:x:1001:nginx\n\
access:x:1100:nginx, alice ,\n\
+wheel\n\
bad:x:notanumber:nginx\n\
nomembers:x:1200\n\
dupgid:x:1001:someone\n\
alice:x:9999:\n\
staff:x:1300:alice,nginx,nginx\n\
g\xff:x:1400:nginx\n";

    fn db() -> Accounts {
        Accounts::parse(PASSWD, GROUP)
    }

    #[test]
    fn parses_valid_entries() {
        let a = db();
        let n = a.user("nginx").unwrap();
        assert_eq!(
            (n.uid, n.gid, n.home.as_str(), n.shell.as_str()),
            (101, 101, "/nonexistent", "/bin/false")
        );
        assert_eq!(a.user("root").unwrap().uid, 0);
        assert_eq!(a.user("last").unwrap().home, "/home/last");
        assert_eq!(a.by_uid(1001).unwrap().name, "alice");
        assert_eq!(a.user("big").unwrap().uid, u32::MAX);
    }

    #[test]
    fn skips_malformed_and_nis_lines() {
        let a = db();
        for name in [
            "+bob", "bob", "-carol", "carol", "short", "baduid", "neg", "toomany", "huge", "broken",
        ] {
            assert!(a.user(name).is_none(), "{name} should be skipped");
        }
        assert!(a.by_uid(7).is_none(), "empty name skipped");
        assert!(a.by_uid(5).is_none());
        // Lines with missing gecos/home/shell are kept with empty fields.
        let nh = a.user("nohome").unwrap();
        assert_eq!((nh.uid, nh.home.as_str(), nh.shell.as_str()), (1003, "", ""));
    }

    #[test]
    fn first_entry_wins_on_duplicates() {
        let a = db();
        assert_eq!(a.user("alice").unwrap().uid, 1001);
        assert_eq!(a.by_uid(2000).unwrap().home, "/dup");
        assert_eq!(a.group_name(1001), Some("alice"));
        assert_eq!(a.gid_of_group("alice"), Some(1001));
    }

    #[test]
    fn non_utf8_is_safe() {
        let a = db();
        // A non-UTF-8 name cannot be looked up but does not break parsing.
        assert!(a.by_uid(1004).is_none());
        let d = a.user("dave").unwrap();
        assert_eq!(d.home, "/home/d\u{fffd}ve");
        assert!(a.group_name(1400).is_none());
        let _ = Accounts::parse(&[0xff, 0xfe, b':', b'\n', 0, 0, 0], &[0x80, b':', b':']);
    }

    #[test]
    fn groups_and_membership() {
        let a = db();
        assert_eq!(a.group_name(1100), Some("access"));
        assert_eq!(a.gid_of_group("nomembers"), Some(1200));
        assert_eq!(a.gid_of_group("bad"), None);
        assert_eq!(a.gid_of_group("wheel"), None);
        assert_eq!(a.gids_of("nginx"), vec![101, 1001, 1100, 1300]);
        assert_eq!(a.gids_of("alice"), vec![1001, 1100, 1300]);
        assert_eq!(a.gids_of("someone"), vec![1001], "members without passwd entry");
        assert!(a.gids_of("nobody-at-all").is_empty());
    }

    #[test]
    fn empty_inputs() {
        let a = Accounts::parse(b"", b"");
        assert!(a.user("root").is_none());
        assert!(a.gids_of("root").is_empty());
        assert_eq!(a.iter().count(), 0);
    }
}
