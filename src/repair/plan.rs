//! Repair plans (pure): for each finding, which file, which byte span, old
//! text, new text, and how safe it is to apply without a person. Nothing here
//! reads or writes a file; `apply` is the only writer.

use crate::apply::{Action, Edit, Plan, Safety, Target};
use crate::checks::{socket_drift, Finding, Severity};
use crate::config::Paths;
use crate::model::{PhpSlot, Server};
use crate::readers::nginx::{expand_tokens, Tokens};
use regex::Regex;
use std::sync::OnceLock;

/// The socket path inside a handler's text and its byte offsets in that text.
/// nginx: `unix:<path>` up to `;`/space/quote; Apache: `proxy:unix:<path>|fcgi://`.
/// DA tokens (`|USER|`) are part of the path.
pub fn socket_in_text(text: &str) -> Option<(usize, usize)> {
    if let Some(i) = text.find("proxy:unix:") {
        let start = i + "proxy:unix:".len();
        let end = start + text[start..].find("|fcgi://")?;
        return Some((start, end));
    }
    let i = text.find("unix:")?;
    let start = i + "unix:".len();
    let mut end = start;
    let b = text.as_bytes();
    while end < b.len() {
        match b[end] {
            b';' | b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\'' | b'{' | b'}' => break,
            _ => end += 1,
        }
    }
    (end > start).then_some((start, end))
}

fn version_dir_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"php(\d{2,3}|\|PHP\d_RELEASE\|)").unwrap())
}

/// `php82` in a path (or a `|PHPn_RELEASE|` token), as (start, end) byte offsets.
fn version_part(path: &str) -> Option<(usize, usize)> {
    version_dir_re().find(path).map(|m| (m.start(), m.end()))
}

/// The `phpXY` directory name of an expected socket path, e.g. `php83`.
fn version_name(expected: &str) -> Option<&str> {
    version_dir_re()
        .find(expected)
        .map(|m| m.as_str())
        .filter(|s| !s.contains('|'))
}

/// Is `path` `<prefix of XY>/sockets/<user or webapps>.sock` for a version XY
/// that is no longer configured? That is the exact shape a PHP upgrade leaves
/// behind, and the only one repaired without asking.
pub fn is_left_by_upgrade(paths: &Paths, slots: &[PhpSlot], user: &str, path: &str) -> bool {
    let Some((pre, post)) = paths.php_prefix.split_once("{XY}") else {
        return false;
    };
    let Some(rest) = path.strip_prefix(pre) else {
        return false;
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() < 2 {
        return false;
    }
    let tail = &rest[digits.len()..];
    let Some(tail) = tail.strip_prefix(post) else {
        return false;
    };
    let ok_name = tail == format!("/sockets/{user}.sock") || tail == "/sockets/webapps.sock";
    let configured = slots
        .iter()
        .any(|s| s.is_enabled() && s.release.replace('.', "") == digits);
    ok_name && !configured
}

fn describe(f: &Finding) -> String {
    let place = match (&f.file, f.line) {
        (Some(file), Some(l)) => format!("{}:{l}", file.rsplit('/').next().unwrap_or(file)),
        _ => String::new(),
    };
    format!(
        "{} {} {place}",
        f.check,
        f.domain.as_deref().unwrap_or("(server-wide)")
    )
}

fn manual(f: &Finding, advice: String) -> Plan {
    Plan {
        finding: describe(f),
        safety: Safety::Manual,
        edits: vec![],
        rewrite_users: vec![],
        actions: vec![],
        target: Target::Nginx,
        advice: Some(advice),
    }
}

fn slots_tokens<'a>(server: &'a Server, user: &'a str, domain: &'a str, expected: &'a str) -> Tokens<'a> {
    Tokens {
        user,
        domain,
        slots: &server.php,
        expected_socket: expected,
    }
}

/// The edit that swaps the socket path inside the finding's text.
fn path_edit(f: &Finding, new_path: &str) -> Option<Edit> {
    let (file, (start, _), text) = (f.file.as_ref()?, f.span?, f.text.as_ref()?);
    let (ps, pe) = socket_in_text(text)?;
    Some(Edit {
        file: file.clone(),
        start: start + ps,
        end: start + pe,
        old: text.as_bytes()[ps..pe].to_vec(),
        new: new_path.as_bytes().to_vec(),
    })
}

/// Users owning the domains a finding affects.
fn users_of(server: &Server, f: &Finding) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in &server.users {
        if u.domains
            .iter()
            .any(|d| f.affected_domains.contains(&d.name) || f.domain.as_deref() == Some(&d.name))
        {
            out.push(u.name.clone());
        }
    }
    if let Some(u) = &f.user {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out.sort();
    out
}

/// The slot now carrying the nearest PHP version, same or newer than `old`
/// (a version like "7.4", or None when unknown: then the default slot 1).
fn nearest_slot(slots: &[PhpSlot], old: Option<&str>) -> Option<u8> {
    let ver = |r: &str| -> Option<(u32, u32)> {
        let (a, b) = r.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let mut fpm: Vec<(&PhpSlot, (u32, u32))> = slots
        .iter()
        .filter(|s| s.is_fpm())
        .filter_map(|s| ver(&s.release).map(|v| (s, v)))
        .collect();
    fpm.sort_by_key(|(_, v)| *v);
    match old.and_then(ver) {
        Some(o) => fpm
            .iter()
            .find(|(_, v)| *v >= o)
            .or(fpm.last())
            .map(|(s, _)| s.slot),
        None => slots
            .iter()
            .find(|s| s.slot == 1 && s.is_fpm())
            .map(|s| s.slot)
            .or(fpm.first().map(|(s, _)| s.slot)),
    }
}

/// `fpm-down`: start or restart that version's service (confirm: it cannot
/// be undone and ends requests in flight).
fn fpm_restart_plan(server: &Server, f: &Finding) -> Option<Plan> {
    if f.severity != Severity::Critical {
        return None;
    }
    // The finding names the version's pid file or master config.
    let fpm = server.evidence.fpm.as_ref()?;
    let v = fpm
        .versions
        .iter()
        .find(|v| f.file.as_deref() == Some(&v.pid_file) || f.file.as_deref() == Some(&v.conf_file))?;
    Some(Plan {
        finding: format!("fpm-down PHP {}", v.release),
        safety: Safety::Confirm,
        edits: vec![],
        rewrite_users: vec![],
        target: Target::Nginx,
        advice: Some(format!(
            "start or restart PHP-FPM {} (`[commands] fpm_restart`, detached); if it stops again, read {}",
            v.release, v.log_file
        )),
        actions: vec![Action::FpmRestart {
            version: v.digits.clone(),
        }],
    })
}

/// A plan for one finding, or `None` when there is nothing to do.
pub fn plan_for(server: &Server, paths: &Paths, f: &Finding) -> Option<Plan> {
    if f.check == crate::checks::fpm_down::ID {
        return fpm_restart_plan(server, f);
    }
    if f.severity >= Severity::Warning {
        if f.check == crate::checks::mysql_stall::ID {
            return mysql_plan(f);
        }
        if f.check == crate::checks::loopback_banned::ID {
            return ban_plan(server, f);
        }
    }
    if f.check != socket_drift::ID || f.severity == Severity::Info {
        return None;
    }
    if f.severity == Severity::Unknown {
        return Some(manual(f, format!("The scan could not tell which socket this handler reaches ({}). Read {} and make the handler name a socket literally.", f.message, f.file.as_deref().unwrap_or("the file"))));
    }
    let user = f.user.clone().unwrap_or_default();
    let domain = f.domain.clone().unwrap_or_default();
    let target = if f
        .file
        .as_deref()
        .is_some_and(|p| p.ends_with(".cust_httpd") || p.ends_with("/httpd.conf"))
    {
        Target::Apache
    } else {
        Target::Nginx
    };
    match f.layer {
        Some("panel") => {
            // php1_select names a disabled slot: move the domain to the slot
            // carrying the nearest version (the old version is unknown here).
            let (file, (start, end)) = (f.file.clone()?, f.span?);
            let text = f.text.as_deref().unwrap_or("");
            let old_value = text.split_once('=').map(|(_, v)| v.trim()).unwrap_or("");
            let slot = nearest_slot(&server.php, None)?;
            Some(Plan {
                finding: describe(f),
                safety: Safety::Confirm,
                edits: vec![Edit {
                    file,
                    start,
                    end,
                    old: old_value.as_bytes().to_vec(),
                    new: slot.to_string().into_bytes(),
                }],
                rewrite_users: vec![user],
                actions: vec![],
                target,
                advice: None,
            })
        }
        Some("custom") => {
            let expected = f.expected_socket.clone()?;
            let text = f.text.as_deref()?;
            let (ps, pe) = socket_in_text(text)?;
            let old_src = &text[ps..pe];
            if f.socket.as_deref() == Some(expected.as_str()) {
                return Some(manual(
                    f,
                    format!("{expected} is the right socket but nothing answers on it: start or restart PHP-FPM for that version (e.g. `service php-fpm{} restart`).", version_name(&expected).unwrap_or("XY").trim_start_matches("php")),
                ));
            }
            // Keep DA's token form when swapping only the version makes it right.
            let tokens = slots_tokens(server, &user, &domain, &expected);
            let new_src = match (version_part(old_src), version_name(&expected)) {
                (Some((a, b)), Some(v)) if old_src.contains('|') => {
                    let candidate = format!("{}{v}{}", &old_src[..a], &old_src[b..]);
                    if expand_tokens(&candidate, &tokens).contains(&expected) {
                        candidate
                    } else {
                        expected.clone()
                    }
                }
                _ => expected.clone(),
            };
            let safe = f.severity == Severity::Critical
                && f.socket
                    .as_deref()
                    .is_some_and(|s| is_left_by_upgrade(paths, &server.php, &user, s));
            Some(Plan {
                finding: describe(f),
                safety: if safe { Safety::Safe } else { Safety::Confirm },
                edits: vec![path_edit(f, &new_src)?],
                rewrite_users: vec![user],
                actions: vec![],
                target,
                advice: None,
            })
        }
        Some("template") | Some("overlay") => {
            // Shared by every user: never write one user's socket here; swap
            // only the version part so each user keeps their own socket.
            let expected = f.expected_socket.clone()?;
            let text = f.text.as_deref()?;
            let (ps, pe) = socket_in_text(text)?;
            let old_src = &text[ps..pe];
            let (a, b) = version_part(old_src)?;
            let v = version_name(&expected)?;
            if old_src[a..b] == *v {
                return Some(manual(
                    f,
                    format!(
                        "{} already names {v}; the socket {} {}: check that PHP-FPM {v} runs.",
                        f.file.as_deref().unwrap_or(""),
                        f.socket.as_deref().unwrap_or(""),
                        f.socket_state.unwrap_or("")
                    ),
                ));
            }
            let new_src = format!("{}{v}{}", &old_src[..a], &old_src[b..]);
            let mut edits = vec![path_edit(f, &new_src)?];
            let mut users = users_of(server, f);
            if f.layer == Some("overlay") {
                // CustomBuild copies the overlay over /etc/nginx at the next
                // rewrite_confs; the live copy gets the same bytes now.
                for c in &f.generated_copies {
                    if let Some(e) = copy_edit(f, c, &new_src) {
                        edits.push(e);
                    }
                }
                users.clear();
            }
            Some(Plan {
                finding: describe(f),
                safety: Safety::Confirm,
                edits,
                rewrite_users: users,
                actions: vec![],
                target,
                advice: None,
            })
        }
        Some("generated") => {
            let expected = f.expected_socket.clone();
            if expected.is_some() && f.socket != expected {
                // DA's inputs are right, its output is old: let DA rewrite it.
                return Some(Plan {
                    finding: describe(f),
                    safety: Safety::Safe,
                    edits: vec![],
                    rewrite_users: vec![user],
                    actions: vec![],
                    target,
                    advice: Some(format!(
                        "{} is generated by DirectAdmin from data that already says {}: queue DA's rewrite for {}.",
                        f.file.as_deref().unwrap_or(""),
                        expected.unwrap_or_default(),
                        f.user.as_deref().unwrap_or("the user")
                    )),
                });
            }
            Some(manual(
                f,
                format!(
                    "{} is generated and already names the expected socket, which {}: start or restart PHP-FPM ({}).",
                    f.file.as_deref().unwrap_or(""),
                    f.socket_state.unwrap_or("is not live"),
                    f.socket.as_deref().unwrap_or("")
                ),
            ))
        }
        _ if f.socket.is_some() && f.socket == f.expected_socket => Some(manual(
            f,
            format!(
                "{} names the expected socket {}, which {}: start or restart PHP-FPM for that version.",
                f.file.as_deref().unwrap_or(""),
                f.socket.as_deref().unwrap_or(""),
                f.socket_state.unwrap_or("is not live")
            ),
        )),
        _ => {
            let file = f.file.clone().unwrap_or_default();
            let rel = file.strip_prefix("/etc/nginx/").unwrap_or(&file);
            Some(manual(
                f,
                format!(
                    "{file} is not regenerated from a layer FPM Doctor may edit. Copy it to {}/{rel}, change {} to {} there, then run `da build rewrite_confs` (CustomBuild copies the overlay over /etc/nginx).",
                    paths.cb_nginx_overlay,
                    f.socket.as_deref().unwrap_or("the socket"),
                    f.expected_socket.as_deref().unwrap_or("the expected socket")
                ),
            ))
        }
    }
}

fn action_plan(f: &Finding, edits: Vec<Edit>, actions: Vec<Action>, advice: String) -> Plan {
    Plan {
        finding: describe(f),
        safety: Safety::Confirm,
        edits,
        rewrite_users: vec![],
        actions,
        target: Target::Nginx,
        advice: Some(advice),
    }
}

/// Kill the thread that holds the lock, or the runaway query; never a
/// thread that only waits (killing the blocker frees it).
fn mysql_plan(f: &Finding) -> Option<Plan> {
    let Some(m) = &f.mysql else {
        return Some(manual(
            f,
            "Find what holds the connections (`SHOW PROCESSLIST`), fix the stalls, then raise max_connections if still needed.".into(),
        ));
    };
    if m.waits_for.is_some() || m.db_user.is_empty() {
        return None;
    }
    Some(action_plan(
        f,
        vec![],
        vec![Action::MysqlKill {
            thread: m.thread,
            db_user: m.db_user.clone(),
        }],
        format!(
            "KILL {} ({}): its transaction rolls back{}; this cannot be undone.",
            m.thread,
            m.db_user,
            if m.blocking.is_empty() {
                String::new()
            } else {
                format!(" and thread(s) {:?} proceed", m.blocking)
            }
        ),
    ))
}

/// Insert `ip` into fail2ban's `ignoreip` (an existing line, else a
/// `[DEFAULT]` section), as an edit of jail.local's current bytes.
fn ignoreip_edit(file: &str, src: &[u8], ip: &str) -> Edit {
    let text = String::from_utf8_lossy(src);
    let mut pos = 0usize;
    let mut default_end = None;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if let Some((k, _)) = body.split_once('=') {
            if k.trim() == "ignoreip" {
                let at = pos + body.len();
                return Edit {
                    file: file.into(),
                    start: at,
                    end: at,
                    old: vec![],
                    new: format!(" {ip}").into_bytes(),
                };
            }
        }
        if body.trim() == "[DEFAULT]" && default_end.is_none() {
            default_end = Some(pos + line.len());
        }
        pos += line.len();
    }
    let (at, new) = match default_end {
        Some(at) => (at, format!("ignoreip = 127.0.0.1/8 ::1 {ip}\n")),
        None => (0, format!("[DEFAULT]\nignoreip = 127.0.0.1/8 ::1 {ip}\n\n")),
    };
    Edit {
        file: file.into(),
        start: at,
        end: at,
        old: vec![],
        new: new.into_bytes(),
    }
}

/// Unban the address and exempt the upstream's address for good.
fn ban_plan(server: &Server, f: &Finding) -> Option<Plan> {
    use crate::evidence::firewall::Family;
    let b = f.ban.as_ref()?;
    let fw = server.evidence.firewall.as_ref()?;
    // The address to exempt: the upstream's own (a CIDR ban is lifted as written).
    let ip = f
        .socket
        .as_deref()
        .and_then(|s| {
            s.rsplit_once(':')
                .map(|x| x.0.trim_matches(|c| c == '[' || c == ']').to_string())
        })
        .unwrap_or_else(|| b.address.clone());
    match b.family {
        Family::Csf => {
            let mut edits = vec![];
            if let Some(allow) = &fw.csf_allow {
                let sep = if allow.is_empty() || allow.ends_with(b"\n") { "" } else { "\n" };
                edits.push(Edit {
                    file: fw.csf_allow_file.clone(),
                    start: allow.len(),
                    end: allow.len(),
                    old: vec![],
                    new: format!("{sep}{ip} # fpm-doctor: nginx reaches an upstream on this address\n").into_bytes(),
                });
            }
            Some(action_plan(
                f,
                edits,
                vec![Action::Unban {
                    tool: if b.temporary { "csf_temp" } else { "csf" }.into(),
                    ip: b.address.clone(),
                    jail: None,
                }],
                format!(
                    "`csf -{}r {}` and {ip} in {} so lfd never bans it again.",
                    if b.temporary { "t" } else { "d" },
                    b.address,
                    fw.csf_allow_file
                ),
            ))
        }
        Family::Fail2ban => {
            let edits = fw
                .jail_local
                .as_ref()
                .map(|src| vec![ignoreip_edit(&fw.jail_local_file, src, &ip)])
                .unwrap_or_default();
            Some(action_plan(
                f,
                edits,
                vec![Action::Unban {
                    tool: "fail2ban".into(),
                    ip: b.address.clone(),
                    jail: b.jail.clone(),
                }],
                format!(
                    "`fail2ban-client set {} unbanip {}` and {ip} in `ignoreip` of {}.",
                    b.jail.as_deref().unwrap_or("?"),
                    b.address,
                    fw.jail_local_file
                ),
            ))
        }
        _ => Some(manual(
            f,
            format!(
                "Remove `{}` ({}{}) and exempt {ip}: DA's Brute Force Monitor lists and raw iptables/nftables rules are not edited automatically.",
                f.text.as_deref().unwrap_or(&b.address),
                f.file.as_deref().unwrap_or(""),
                f.line.map(|l| format!(":{l}")).unwrap_or_default()
            ),
        )),
    }
}

/// The same edit at the same place of a byte copy (`/etc/nginx/<file>`).
fn copy_edit(f: &Finding, copy: &crate::checks::Evidence, new_src: &str) -> Option<Edit> {
    let e = path_edit(f, new_src)?;
    // The copy is the overlay's bytes at the same span when CustomBuild copied it.
    (copy.text == *f.text.as_ref()?).then(|| Edit {
        file: copy.file.clone(),
        ..e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Vec<PhpSlot> {
        vec![
            PhpSlot {
                slot: 1,
                release: "8.3".into(),
                mode: "php-fpm".into(),
                prefix: "/usr/local/php83".into(),
            },
            PhpSlot {
                slot: 2,
                release: "no".into(),
                mode: "php-fpm".into(),
                prefix: String::new(),
            },
            PhpSlot {
                slot: 3,
                release: "7.4".into(),
                mode: "php-fpm".into(),
                prefix: "/usr/local/php74".into(),
            },
        ]
    }

    #[test]
    fn finds_socket_paths_in_text() {
        let t = "fastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;";
        let (a, b) = socket_in_text(t).unwrap();
        assert_eq!(&t[a..b], "/usr/local/php82/sockets/|USER|.sock");
        let t = "AddHandler \"proxy:unix:/usr/local/php82/sockets/|USER|.sock|fcgi://localhost\" .php";
        let (a, b) = socket_in_text(t).unwrap();
        assert_eq!(&t[a..b], "/usr/local/php82/sockets/|USER|.sock");
        assert!(socket_in_text("fastcgi_pass 127.0.0.1:9000;").is_none());
    }

    #[test]
    fn only_the_upgrade_shape_is_safe() {
        let p = Paths::default();
        let s = slots();
        assert!(is_left_by_upgrade(
            &p,
            &s,
            "alice",
            "/usr/local/php82/sockets/alice.sock"
        ));
        assert!(is_left_by_upgrade(
            &p,
            &s,
            "alice",
            "/usr/local/php82/sockets/webapps.sock"
        ));
        assert!(
            !is_left_by_upgrade(&p, &s, "alice", "/usr/local/php82/sockets/bob.sock"),
            "another user's pool"
        );
        assert!(
            !is_left_by_upgrade(&p, &s, "alice", "/usr/local/php74/sockets/alice.sock"),
            "7.4 is still configured"
        );
        assert!(!is_left_by_upgrade(&p, &s, "alice", "/home/alice/php.sock"));
    }

    #[test]
    fn fpm_down_plans_a_detached_restart() {
        use crate::evidence::fpm::{Master, PidFile};
        use crate::probe::SocketState;
        let s = crate::checks::fpm_down::fixture_server(
            PidFile::Pid { pid: 9 },
            Master::Gone { pid: 9 },
            SocketState::Refused,
        );
        let a = crate::checks::analyse(&s);
        let f = a.findings.iter().find(|f| f.check == "fpm-down").unwrap();
        let p = plan_for(&s, &Paths::default(), f).unwrap();
        assert_eq!(p.safety, Safety::Confirm);
        assert!(p.edits.is_empty());
        assert_eq!(p.actions, vec![Action::FpmRestart { version: "83".into() }]);
    }

    #[test]
    fn nearest_slot_prefers_same_or_newer() {
        let s = slots();
        assert_eq!(nearest_slot(&s, Some("7.2")), Some(3));
        assert_eq!(nearest_slot(&s, Some("8.2")), Some(1));
        assert_eq!(
            nearest_slot(&s, Some("9.0")),
            Some(1),
            "nothing newer: the newest"
        );
        assert_eq!(nearest_slot(&s, None), Some(1));
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::model::Layer;

    const OLD: &str = "/usr/local/php82/sockets/alice.sock";
    const NEW: &str = "/usr/local/php83/sockets/alice.sock";

    fn finding(layer: Layer, text: &str, socket: &str) -> Finding {
        let mut f = Finding::new(socket_drift::ID, Severity::Critical, String::new());
        f.user = Some("alice".into());
        f.domain = Some("a.test".into());
        f.file = Some("/usr/local/directadmin/data/users/alice/domains/a.test.cust_nginx".into());
        f.line = Some(2);
        f.text = Some(text.into());
        f.span = Some((100, 100 + text.len()));
        f.layer = Some(layer.as_str());
        f.socket = Some(socket.into());
        f.expected_socket = Some(NEW.into());
        f
    }

    fn server() -> Server {
        crate::checks::socket_drift::fixture_server(OLD, &[NEW], Layer::Custom)
    }

    #[test]
    fn custom_literal_becomes_expected_and_is_safe() {
        let text = format!("fastcgi_pass unix:{OLD};");
        let p = plan_for(&server(), &Paths::default(), &finding(Layer::Custom, &text, OLD)).unwrap();
        assert_eq!(p.safety, Safety::Safe);
        let e = &p.edits[0];
        assert_eq!(e.old, OLD.as_bytes());
        assert_eq!(e.new, NEW.as_bytes());
        assert_eq!(e.start, 100 + "fastcgi_pass unix:".len());
        assert_eq!(p.rewrite_users, vec!["alice"]);
    }

    #[test]
    fn custom_token_form_is_kept() {
        let text = "fastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;";
        let p = plan_for(&server(), &Paths::default(), &finding(Layer::Custom, text, OLD)).unwrap();
        assert_eq!(p.edits[0].new, b"/usr/local/php83/sockets/|USER|.sock");
    }

    #[test]
    fn another_users_socket_needs_confirmation() {
        let bob = "/usr/local/php82/sockets/bob.sock";
        let text = format!("fastcgi_pass unix:{bob};");
        let p = plan_for(&server(), &Paths::default(), &finding(Layer::Custom, &text, bob)).unwrap();
        assert_eq!(p.safety, Safety::Confirm);
    }

    #[test]
    fn template_swaps_only_the_version() {
        let text = "fastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;";
        let mut f = finding(Layer::Template, text, OLD);
        f.file = Some("/usr/local/directadmin/data/templates/custom/nginx_server.conf".into());
        let p = plan_for(&server(), &Paths::default(), &f).unwrap();
        assert_eq!(p.safety, Safety::Confirm);
        assert_eq!(
            p.edits[0].new, b"/usr/local/php83/sockets/|USER|.sock",
            "never one user's literal socket"
        );
        // A literal user name in a shared layer keeps that name: only the version moves.
        let p = plan_for(
            &server(),
            &Paths::default(),
            &finding(Layer::Template, &format!("fastcgi_pass unix:{OLD};"), OLD),
        )
        .unwrap();
        assert_eq!(p.edits[0].new, NEW.as_bytes());
    }

    #[test]
    fn overlay_edits_the_live_copy_too() {
        let text = "fastcgi_pass unix:/usr/local/php82/sockets/webapps.sock;";
        let mut f = finding(Layer::Overlay, text, "/usr/local/php82/sockets/webapps.sock");
        f.expected_socket = Some("/usr/local/php83/sockets/webapps.sock".into());
        f.file = Some("/usr/local/directadmin/custombuild/custom/nginx/conf/nginx.conf".into());
        f.generated_copies = vec![crate::checks::Evidence {
            file: "/etc/nginx/nginx.conf".into(),
            line: 2,
            text: text.into(),
        }];
        let p = plan_for(&server(), &Paths::default(), &f).unwrap();
        assert_eq!(p.edits.len(), 2);
        assert_eq!(p.edits[1].file, "/etc/nginx/nginx.conf");
        assert!(p.rewrite_users.is_empty());
    }

    #[test]
    fn generated_is_never_edited_only_rewritten() {
        let text = format!("fastcgi_pass unix:{OLD};");
        let mut f = finding(Layer::Generated, &text, OLD);
        f.file = Some("/usr/local/directadmin/data/users/alice/nginx_php.conf".into());
        let p = plan_for(&server(), &Paths::default(), &f).unwrap();
        assert!(p.edits.is_empty());
        assert_eq!(p.rewrite_users, vec!["alice"]);
        assert_eq!(p.safety, Safety::Safe);
    }

    #[test]
    fn global_etc_nginx_is_manual_advice() {
        let text = format!("fastcgi_pass unix:{OLD};");
        let mut f = finding(Layer::Global, &text, OLD);
        f.file = Some("/etc/nginx/conf.d/legacy.conf".into());
        let p = plan_for(&server(), &Paths::default(), &f).unwrap();
        assert_eq!(p.safety, Safety::Manual);
        assert!(p
            .advice
            .unwrap()
            .contains("custombuild/custom/nginx/conf/conf.d/legacy.conf"));
    }

    #[test]
    fn dead_slot_moves_to_a_live_one() {
        let mut f = finding(Layer::Panel, "php1_select=2", "");
        f.socket = None;
        f.span = Some((40, 41));
        let p = plan_for(&server(), &Paths::default(), &f).unwrap();
        assert_eq!(p.safety, Safety::Confirm);
        assert_eq!(p.edits[0].old, b"2");
        assert_eq!(p.edits[0].new, b"1");
    }

    #[test]
    fn mysql_kills_the_blocker_never_the_waiter() {
        let s = &crate::checks::mysql_stall::fixtures()[0].server;
        let a = crate::checks::analyse_only(s, Some(&["mysql-stall".to_string()]));
        let plans: Vec<Plan> = a
            .findings
            .iter()
            .filter_map(|f| plan_for(s, &Paths::default(), f))
            .collect();
        assert_eq!(plans.len(), 1, "{plans:#?}");
        assert_eq!(
            plans[0].actions,
            vec![Action::MysqlKill {
                thread: 11,
                db_user: "alice_wp".into()
            }]
        );
        assert_eq!(plans[0].safety, Safety::Confirm);
    }

    #[test]
    fn csf_ban_plan_unbans_and_allows() {
        let mut s = crate::checks::loopback_banned::fixtures()[0].server.clone();
        s.evidence.firewall.as_mut().unwrap().csf_allow = Some(b"# allow\n1.2.3.4".to_vec());
        let a = crate::checks::analyse_only(&s, Some(&["loopback-banned".to_string()]));
        let p = plan_for(&s, &Paths::default(), &a.findings[0]).unwrap();
        assert_eq!(p.edits[0].start, 15);
        assert_eq!(
            String::from_utf8_lossy(&p.edits[0].new),
            "\n127.0.0.1 # fpm-doctor: nginx reaches an upstream on this address\n"
        );
        assert!(
            matches!(&p.actions[0], Action::Unban { tool, ip, .. } if tool == "csf" && ip == "127.0.0.1")
        );
    }

    #[test]
    fn fail2ban_ignoreip_edits() {
        let e = ignoreip_edit(
            "/j",
            b"[DEFAULT]\nignoreip = 127.0.0.1/8\nbantime = 1h\n",
            "1.2.3.4",
        );
        assert_eq!((e.start, e.new.as_slice()), (32, &b" 1.2.3.4"[..]));
        let e = ignoreip_edit("/j", b"[DEFAULT]\nbantime = 1h\n", "1.2.3.4");
        assert_eq!(e.start, 10);
        let e = ignoreip_edit("/j", b"[sshd]\nenabled = true\n", "1.2.3.4");
        assert_eq!(e.start, 0);
        assert!(String::from_utf8_lossy(&e.new).starts_with("[DEFAULT]\n"));
    }

    #[test]
    fn info_and_other_checks_get_no_plan() {
        let mut f = finding(Layer::Custom, "x", OLD);
        f.severity = Severity::Info;
        assert!(plan_for(&server(), &Paths::default(), &f).is_none());
    }
}

/// A plan for any check's finding: the checks with repairs of their own
/// (`fastcgi-timeout`, `xdebug-enabled`), else [`plan_for`].
pub fn plan_for_check(server: &Server, cfg: &crate::config::Config, f: &Finding) -> Option<Plan> {
    use crate::checks::{fastcgi_timeout, xdebug};
    if f.check == fastcgi_timeout::ID {
        return timeout_plan(server, &cfg.paths, cfg.system.fastcgi_timeout_secs, f);
    }
    if f.check == xdebug::ID {
        return xdebug_plan(server, &cfg.system.surviving_ini, f);
    }
    let mut p = plan_for(server, &cfg.paths, f)?;
    // A restart whose command is off here (an offline --root copy without
    // `[commands] fpm_restart`) cannot be applied: say what to do instead.
    let blocked: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            crate::apply::Action::FpmRestart { version }
                if crate::apply::commands::resolve_fpm_restart(cfg, version).is_none() =>
            {
                Some(version.clone())
            }
            _ => None,
        })
        .collect();
    if !blocked.is_empty() {
        p.actions.clear();
        p.safety = Safety::Manual;
        p.advice = Some(format!(
            "Start PHP-FPM {} on the server (no restart command is configured for this run: set [commands] fpm_restart).",
            blocked.join(", ")
        ));
    }
    Some(p)
}

/// Raises `fastcgi_read_timeout` where it takes effect for the domain's PHP
/// location, in the `.cust_nginx` (survives DA's rewrite), never adding a
/// second directive to a block that has one (nginx refuses duplicates).
pub fn timeout_plan(server: &Server, paths: &Paths, want_secs: u64, f: &Finding) -> Option<Plan> {
    use crate::checks::fastcgi_timeout::{handler_for, secs};
    use crate::model::{Layer, Level, DEFAULT_READ_TIMEOUT_MS};
    if f.severity < Severity::Warning {
        return None;
    }
    let domain = f.domain.clone()?;
    let Some((user, h)) = handler_for(
        server,
        &domain,
        f.socket
            .as_deref()
            .map(|s| {
                // handler_for takes nginx's upstream form.
                if s.starts_with('/') {
                    format!("unix:{s}")
                } else {
                    s.to_string()
                }
            })
            .as_deref(),
    ) else {
        return Some(manual(f, format!("The PHP location of {domain} was not found in the nginx configs: set `fastcgi_read_timeout` by hand where it serves PHP.")));
    };
    let cur = h
        .read_timeout
        .as_ref()
        .map(|t| t.millis)
        .unwrap_or(DEFAULT_READ_TIMEOUT_MS);
    let new_secs = want_secs.max(cur.div_ceil(1000) * 2);
    let directive = format!("fastcgi_read_timeout {new_secs}s;");
    let mitigation = format!(
        "Mitigation, not a cure: nginx will wait {new_secs} s instead of {} for PHP; the slow script still holds a worker that long. Find it in PHP-FPM's slowlog.",
        secs(cur)
    );
    let plan = |edit: Edit| Plan {
        finding: describe(f),
        safety: Safety::Confirm,
        edits: vec![edit],
        rewrite_users: vec![user.to_string()],
        target: Target::Nginx,
        advice: Some(mitigation.clone()),
        actions: vec![],
    };
    let t = h.read_timeout.as_ref();
    // 1. The line in force is in a .cust_nginx: change its value in place.
    if let Some(t) = t.filter(|t| t.layer == Layer::Custom) {
        return Some(plan(Edit {
            file: t.at.file.clone(),
            start: t.at.start,
            end: t.at.end,
            old: t.at.text.as_bytes().to_vec(),
            new: directive.into_bytes(),
        }));
    }
    // 2. The PHP location sets its own in a layer we do not edit: a
    // server-level line would be shadowed by it.
    if let Some(t) = t.filter(|t| t.level == Level::Location) {
        return Some(manual(f, format!(
            "The PHP location sets its own `{}` at {}:{} ({} layer), which shadows any server-level value: a line in the .cust_nginx would change nothing. {}",
            t.at.text, t.at.file, t.at.line, t.layer.as_str(),
            if t.layer == Layer::Generated { "DA regenerates that file: change the template it comes from (data/templates/custom/nginx_php.conf), then rewrite the configs." } else { "Change it there, then run `nginx -t` and reload nginx." }
        )));
    }
    // 3. The PHP location comes from the .cust_nginx: add the line inside it.
    if h.layer == Layer::Custom {
        let s = &h.source;
        return Some(plan(Edit {
            file: s.file.clone(),
            start: s.start,
            end: s.end,
            old: s.text.as_bytes().to_vec(),
            new: format!("{}\n\t{directive}", s.text).into_bytes(),
        }));
    }
    // 4. A server-level line elsewhere: another one would be a duplicate.
    if let Some(t) = t.filter(|t| t.level == Level::Server) {
        return Some(manual(f, format!(
            "The server block already sets `{}` at {}:{} ({} layer); a second one in the .cust_nginx would make `nginx -t` fail (duplicate directive). Change that line (its template, if DA generates it).",
            t.at.text, t.at.file, t.at.line, t.layer.as_str()
        )));
    }
    // 5. Server level in the .cust_nginx, which DA inlines at the top of the
    // server block (an http-level value is shadowed by it, as intended).
    let tail = server
        .users
        .iter()
        .flat_map(|u| u.domains.iter())
        .find(|d| d.name == domain)
        .and_then(|d| d.cust_nginx.clone());
    let Some(tail) = tail else {
        let parent = server
            .users
            .iter()
            .flat_map(|u| u.domains.iter())
            .find(|d| d.name == domain)
            .and_then(|d| d.parent.clone())
            .unwrap_or(domain.clone());
        return Some(manual(f, format!(
            "{parent} has no .cust_nginx yet: create {}/{user}/domains/{parent}.cust_nginx (Admin > Custom HTTPD Configurations) with the line `{directive}`, then rewrite the user's configs. {mitigation}",
            paths.users_dir.trim_end_matches('/')
        )));
    };
    let nl = if tail.last_line.ends_with('\n') || tail.last_line.is_empty() {
        ""
    } else {
        "\n"
    };
    Some(plan(Edit {
        file: tail.path.clone(),
        start: tail.last_line_start,
        end: tail.last_line_start + tail.last_line.len(),
        old: tail.last_line.as_bytes().to_vec(),
        new: format!("{}{nl}{directive}\n", tail.last_line).into_bytes(),
    }))
}

/// Comments out an active Xdebug line, only in an ini file a CustomBuild
/// rebuild leaves alone (`surviving` globs, `{prefix}` per slot).
pub fn xdebug_plan(server: &Server, surviving: &[String], f: &Finding) -> Option<Plan> {
    if f.severity < Severity::Warning {
        return None;
    }
    let file = f.file.clone()?;
    let restart = server
        .php
        .iter()
        .filter(|s| s.is_fpm() && file.starts_with(&format!("{}/", s.prefix)))
        .map(|s| format!("php-fpm{}", s.release.replace('.', "")))
        .next()
        .unwrap_or_else(|| "PHP-FPM".into());
    let (Some((start, end)), Some(text)) = (f.span, f.text.clone()) else {
        return Some(manual(f, format!("{} Find the ini file that loads it (`php-fpmXY -i | grep ini`) and comment the line out, then restart {restart}.", f.message)));
    };
    let keeps = server.php.iter().filter(|s| s.is_fpm()).any(|s| {
        surviving.iter().any(|g| {
            glob::Pattern::new(&Paths::php_path(g, &s.prefix, &s.release)).is_ok_and(|p| p.matches(&file))
        })
    });
    if !keeps {
        return Some(manual(f, format!(
            "{file}:{} may be regenerated by CustomBuild (not in the configured surviving ini files). Comment out `{text}` there now, restart {restart}, and remove Xdebug the way it was installed so a rebuild does not bring it back; or put your own ini overrides in a surviving file (system.surviving_ini).",
            f.line.unwrap_or(0)
        )));
    }
    Some(Plan {
        finding: describe(f),
        safety: Safety::Confirm,
        edits: vec![Edit {
            file,
            start,
            end,
            old: text.as_bytes().to_vec(),
            new: format!(";{text}").into_bytes(),
        }],
        rewrite_users: vec![],
        target: Target::Nginx,
        advice: Some(format!(
            "Then restart {restart} (`service {restart} restart`): PHP reads ini files at start."
        )),
        actions: vec![],
    })
}

#[cfg(test)]
mod system_plan_tests {
    use super::*;
    use crate::checks::fastcgi_timeout::fixture;
    use crate::checks::{analyse_only, fastcgi_timeout, xdebug};
    use crate::model::{Layer, Level};

    const READ_110: &str = "2026/11/24 20:10:44 [error] 9#9: *7 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 1.2.3.4, server: a.test, request: \"GET /slow.php HTTP/1.1\", upstream: \"fastcgi://unix:/usr/local/php83/sockets/alice.sock:\", host: \"a.test\"";

    fn plan_of(s: &Server) -> Plan {
        let a = analyse_only(s, Some(&[fastcgi_timeout::ID.to_string()]));
        let f = a
            .findings
            .iter()
            .find(|f| f.check == fastcgi_timeout::ID)
            .unwrap();
        plan_for_check(s, &crate::config::Config::default(), f).unwrap()
    }

    #[test]
    fn cust_line_in_force_is_edited_in_place() {
        let p = plan_of(&fixture(READ_110, Some((2, Level::Server, Layer::Custom))));
        assert_eq!(p.safety, Safety::Confirm);
        assert_eq!(p.edits[0].old, b"fastcgi_read_timeout 2s;");
        assert_eq!(p.edits[0].new, b"fastcgi_read_timeout 300s;");
        assert!(p.advice.unwrap().starts_with("Mitigation"));
    }

    #[test]
    fn default_timeout_appends_at_server_level_in_cust_nginx() {
        let p = plan_of(&fixture(READ_110, None));
        let e = &p.edits[0];
        assert!(e.file.ends_with("a.test.cust_nginx"));
        assert_eq!(e.old, b"client_max_body_size 64m;\n");
        assert_eq!(
            e.new,
            b"client_max_body_size 64m;\nfastcgi_read_timeout 300s;\n".to_vec()
        );
        assert_eq!(p.rewrite_users, vec!["alice"]);
    }

    #[test]
    fn location_setting_elsewhere_or_no_cust_file_is_manual() {
        let p = plan_of(&fixture(READ_110, Some((30, Level::Location, Layer::Generated))));
        assert_eq!(p.safety, Safety::Manual);
        assert!(p.advice.unwrap().contains("shadows"));
        let p = plan_of(&fixture(READ_110, Some((30, Level::Server, Layer::Template))));
        assert_eq!(
            p.safety,
            Safety::Manual,
            "a second server-level line would be a duplicate"
        );
        let mut s = fixture(READ_110, None);
        s.users[0].domains[0].cust_nginx = None;
        let p = plan_of(&s);
        assert_eq!(p.safety, Safety::Manual);
        assert!(p.advice.unwrap().contains("a.test.cust_nginx"));
    }

    #[test]
    fn php_location_from_cust_nginx_gets_the_line_inside() {
        let mut s = fixture(READ_110, None);
        let h = &mut s.users[0].domains[0].vhosts[0].handlers[0];
        h.layer = Layer::Custom;
        h.source.file = "/usr/local/directadmin/data/users/alice/domains/a.test.cust_nginx".into();
        h.generated_copies = vec![h.source.clone()];
        let p = plan_of(&s);
        let e = &p.edits[0];
        assert_eq!(e.old, h_text(&s).as_bytes());
        assert!(String::from_utf8_lossy(&e.new).ends_with(";\n\tfastcgi_read_timeout 300s;"));
        // Twice a long current timeout, not less than it.
        let p = plan_of(&fixture(READ_110, Some((400, Level::Location, Layer::Custom))));
        assert_eq!(p.edits[0].new, b"fastcgi_read_timeout 800s;");
    }

    fn h_text(s: &Server) -> String {
        s.users[0].domains[0].vhosts[0].handlers[0].source.text.clone()
    }

    #[test]
    fn xdebug_only_in_surviving_files() {
        let mut s = xdebug::fixture(
            &[
                (xdebug::CUSTOM_INI, "zend_extension=xdebug.so\n"),
                (xdebug::PHP_INI, "zend_extension=xdebug.so\n"),
            ],
            None,
        );
        s.php = vec![PhpSlot {
            slot: 1,
            release: "8.3".into(),
            mode: "php-fpm".into(),
            prefix: "/usr/local/php83".into(),
        }];
        let a = analyse_only(&s, Some(&[xdebug::ID.to_string()]));
        let cfg = crate::config::Config::default();
        let plans: Vec<Plan> = a
            .findings
            .iter()
            .filter_map(|f| plan_for_check(&s, &cfg, f))
            .collect();
        assert_eq!(plans.len(), 2);
        let custom = &plans[0];
        assert_eq!(custom.safety, Safety::Confirm);
        assert_eq!(custom.edits[0].file, xdebug::CUSTOM_INI);
        assert_eq!(custom.edits[0].new, b";zend_extension=xdebug.so");
        assert!(custom.advice.as_deref().unwrap().contains("php-fpm83"));
        assert_eq!(plans[1].safety, Safety::Manual, "php.ini may be regenerated");
    }
}
