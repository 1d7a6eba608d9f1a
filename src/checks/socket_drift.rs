//! `socket-drift`: a PHP handler points at a PHP-FPM socket that is gone,
//! dead, or not the one the panel says the domain should use.

use super::{CheckDoc, Evidence, Finding, Severity};
use crate::model::{expected_socket, expected_webapps_socket, Domain, Handler, Server, Target, User, Vhost};
use crate::probe::{Endpoint, SocketState};
use serde::Serialize;
use std::collections::HashMap;

pub const ID: &str = "socket-drift";

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "PHP handler points at the wrong or a dead PHP-FPM socket",
    what: "Compares every `fastcgi_pass unix:…` (nginx) and `proxy:unix:…|fcgi://` (Apache) that serves a \
domain with the socket the panel data implies (the domain's `php1_select` slot → that slot's release → \
`/usr/local/phpXY/sockets/<user>.sock`, or the user's pool `listen`), and connects to it.",
    why: "When CustomBuild upgrades PHP (8.2 → 8.3) DirectAdmin rewrites its own configs, but text that survives \
a rewrite — a domain's `.cust_nginx`, a custom template, a CustomBuild overlay — still names \
`/usr/local/php82/sockets/<user>.sock`. nginx then answers 502 Bad Gateway: `connect() to unix:… failed \
(2: No such file or directory)`, or `(111: Connection refused)` when a stale socket file is left behind.",
    example: "`alice.test.cust_nginx:3: fastcgi_pass unix:/usr/local/php82/sockets/alice.sock;` while options.conf \
says `php1_release=8.3`: the socket is missing, expected `/usr/local/php83/sockets/alice.sock`.",
    fix: "Replace the stale socket path in the layer that produced it (the `.cust_*` file, the custom template, \
the overlay), then let DirectAdmin rewrite the configs. Never edit generated files: the next rewrite undoes it. \
A domain whose `php1_select` names a disabled slot needs a slot that carries PHP.",
    fix_safety: "Safe when the stale path is `/usr/local/phpXY/sockets/<same user>.sock` (or webapps.sock) and \
XY is no longer configured; server-wide layers and slot changes need confirmation.",
};

/// One row of the `domains` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainStatus {
    pub user: String,
    pub domain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub php_slot: u8,
    pub php_release: Option<String>,
    pub expected_socket: Option<String>,
    /// `ok|drift|unknown|not_applicable`
    pub status: &'static str,
    /// Why the expected socket is what it is.
    pub expected_basis: String,
}

pub struct Output {
    pub findings: Vec<Finding>,
    pub domains: Vec<DomainStatus>,
}

fn state_of(server: &Server, ep: &Endpoint) -> (SocketState, Option<String>) {
    match server.probes.get(ep) {
        Some(r) => (r.state, Some(r.detail.clone()).filter(|d| !d.is_empty())),
        None => (SocketState::NotProbed, None),
    }
}

fn describe(state: SocketState) -> &'static str {
    match state {
        SocketState::Missing => "does not exist",
        SocketState::NotSocket => "is not a socket",
        SocketState::Refused => "refuses connections (a stale socket file: nothing listens)",
        SocketState::PermissionDenied => "cannot be opened by the nginx worker (permission denied)",
        SocketState::Timeout => "accepted but did not answer the FastCGI handshake in time",
        SocketState::Busy => "has a full listen backlog (pool exhausted)",
        SocketState::NotFastcgi => "answers, but not as a FastCGI server",
        SocketState::Listening => "is listening",
        SocketState::NotProbed => "was not probed",
    }
}

/// Judges one handler; `None` when it is healthy.
fn judge(
    server: &Server,
    h: &Handler,
    expected: Option<&str>,
    user: Option<&str>,
    domain: &str,
) -> Option<Finding> {
    let mut f = Finding::new(ID, Severity::Info, String::new());
    f.user = user.map(str::to_string);
    f.domain = Some(domain.to_string());
    f.file = Some(h.source.file.clone());
    f.line = Some(h.source.line);
    f.text = Some(h.source.text.clone());
    f.layer = Some(h.layer.as_str());
    f.span = Some((h.source.start, h.source.end));
    f.expected_socket = expected.map(str::to_string);
    f.generated_copies = h
        .generated_copies
        .iter()
        .map(|l| Evidence {
            file: l.file.clone(),
            line: l.line,
            text: l.text.clone(),
        })
        .collect();
    let ep = match &h.target {
        Target::Unresolved(why) => {
            f.severity = Severity::Unknown;
            f.socket = Some(h.raw_target.clone());
            f.socket_state = Some(SocketState::NotProbed.as_str());
            f.message = format!("cannot tell which socket `{}` reaches: {why}", h.raw_target);
            return Some(f);
        }
        Target::Endpoint(ep) => ep,
    };
    let (state, detail) = state_of(server, ep);
    f.socket = Some(match ep {
        Endpoint::Unix(p) => p.clone(),
        other => other.display(),
    });
    f.socket_state = Some(state.as_str());
    f.socket_detail = detail;
    let matches = matches!(ep, Endpoint::Unix(p) if Some(p.as_str()) == expected);
    let live = state == SocketState::Listening;
    let probed = state != SocketState::NotProbed;
    let sock = f.socket.clone().unwrap_or_default();
    if h.shadowed {
        if probed && !live {
            f.severity = Severity::Info;
            f.message = format!(
                "an earlier identical `location {}` wins, so this handler never serves; its socket {sock} {} \
and would 502 if the earlier one went away",
                h.location.as_deref().unwrap_or(""),
                describe(state)
            );
            return Some(f);
        }
        return None;
    }
    if probed && !live {
        f.severity = Severity::Critical;
        let want = match expected {
            Some(e) if !matches => format!("; the panel expects {e}"),
            Some(_) => "; it is the expected socket: is PHP-FPM running for this version?".into(),
            None => String::new(),
        };
        f.message = format!(
            "PHP requests go to {sock}, which {}: the web server answers 502{want}",
            describe(state)
        );
        return Some(f);
    }
    if matches || expected.is_none() {
        return None;
    }
    f.severity = Severity::Warning;
    f.message = if live {
        format!(
            "PHP is served through {sock}, which is live but is not the socket the panel expects ({}); \
fine if deliberate, drift if left over",
            expected.unwrap_or_default()
        )
    } else {
        format!(
            "PHP is served through {sock} (not probed), not the expected {}",
            expected.unwrap_or_default()
        )
    };
    Some(f)
}

fn handlers(vhosts: &[Vhost]) -> impl Iterator<Item = &Handler> {
    vhosts.iter().flat_map(|v| v.handlers.iter())
}

/// Findings about the same text: domain, file, span, socket.
type MergeKey = (
    Option<String>,
    Option<String>,
    Option<(usize, usize)>,
    Option<String>,
);

/// Merges findings about the same source text (a `.cust_nginx` inlined in the
/// port-80 and the 443 server block is one finding with two copies).
fn merge(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let mut index: HashMap<MergeKey, usize> = HashMap::new();
    for f in findings {
        // Server-wide layers explain many domains at once: one finding, all domains listed.
        let per_domain = !matches!(f.layer, Some("overlay") | Some("global") | Some("template"));
        let key = (
            if per_domain { f.domain.clone() } else { None },
            f.file.clone(),
            f.span,
            f.socket.clone(),
        );
        match index.get(&key) {
            Some(&i) => {
                let o = &mut out[i];
                if let Some(d) = &f.domain {
                    if !o.affected_domains.contains(d) {
                        o.affected_domains.push(d.clone());
                    }
                }
                if o.user != f.user {
                    o.user = None;
                }
                if o.affected_domains.len() > 1 {
                    o.domain = None;
                }
                for c in f.generated_copies {
                    if !o.generated_copies.contains(&c) {
                        o.generated_copies.push(c);
                    }
                }
                if f.severity > o.severity {
                    o.severity = f.severity;
                    o.message = f.message;
                }
            }
            None => {
                index.insert(key, out.len());
                let mut f = f;
                f.affected_domains = f.domain.iter().cloned().collect();
                out.push(f);
            }
        }
    }
    out
}

fn domain_row(server: &Server, u: &User, d: &Domain, findings: &mut Vec<Finding>) -> DomainStatus {
    let exp = expected_socket(&server.php, &u.pools, &u.name, d.php_select);
    let mut row = DomainStatus {
        user: u.name.clone(),
        domain: d.name.clone(),
        parent: d.parent.clone(),
        php_slot: exp.slot,
        php_release: exp.release.clone(),
        expected_socket: exp.socket.clone(),
        status: "ok",
        expected_basis: exp.basis.clone(),
    };
    let applicable = matches!(
        server.webserver.as_deref(),
        None | Some("nginx") | Some("nginx_apache") | Some("apache")
    );
    if !applicable {
        row.status = "not_applicable";
        return row;
    }
    let start = findings.len();
    let slot = server.slot(exp.slot);
    match slot {
        Some(s) if !s.is_enabled() => {
            let mut f = Finding::new(
                ID,
                Severity::Critical,
                format!(
                    "{} uses PHP slot {} (php1_select={}), but that slot is disabled (php{}_release=no): \
DirectAdmin has no PHP-FPM to send it to",
                    d.name, exp.slot, exp.slot, exp.slot
                ),
            );
            f.user = Some(u.name.clone());
            f.domain = Some(d.name.clone());
            if let Some(at) = &d.php_select_at {
                f.file = Some(at.file.clone());
                f.line = Some(at.line);
                f.text = Some(at.text.clone());
                f.span = Some((at.start, at.end));
            }
            f.layer = Some(crate::model::Layer::Panel.as_str());
            findings.push(f);
        }
        Some(s) if !s.is_fpm() => {
            // lsphp / fastcgi slots do not run through PHP-FPM: not our business.
            row.status = "not_applicable";
            return row;
        }
        None if exp.release.is_none() && !server.php.is_empty() => {
            let mut f = Finding::new(
                ID,
                Severity::Critical,
                format!(
                    "{} selects PHP slot {}, which options.conf does not define",
                    d.name, exp.slot
                ),
            );
            f.user = Some(u.name.clone());
            f.domain = Some(d.name.clone());
            if let Some(at) = &d.php_select_at {
                f.file = Some(at.file.clone());
                f.line = Some(at.line);
                f.text = Some(at.text.clone());
            }
            findings.push(f);
        }
        _ => {}
    }
    let webapps = expected_webapps_socket(&server.php);
    let mut any_handler = false;
    for h in handlers(&d.vhosts) {
        any_handler = true;
        let expected = if h.webapps {
            webapps.as_deref()
        } else {
            exp.socket.as_deref()
        };
        if let Some(f) = judge(server, h, expected, Some(&u.name), &d.name) {
            findings.push(f);
        }
    }
    let proxied = d.vhosts.iter().any(|v| v.proxies);
    if !any_handler && !proxied && exp.socket.is_some() {
        let mut f = Finding::new(
            "unknown",
            Severity::Unknown,
            format!(
                "no PHP handler serves {}: no server block with a fastcgi_pass was found for it",
                d.name
            ),
        );
        f.user = Some(u.name.clone());
        f.domain = Some(d.name.clone());
        findings.push(f);
    }
    let mine = &findings[start..];
    let user_unknown = server.unknowns.iter().any(|x| {
        x.user.as_deref() == Some(&u.name) && (x.domain.is_none() || x.domain.as_deref() == Some(&d.name))
    });
    row.status = if mine
        .iter()
        .any(|f| f.check == ID && f.severity >= Severity::Warning)
    {
        "drift"
    } else if exp.socket.is_none() && exp.release.is_none()
        || user_unknown
        || mine.iter().any(|f| f.severity == Severity::Unknown)
    {
        "unknown"
    } else {
        "ok"
    };
    row
}

/// Registry entry point: the findings and the state for the server.
pub fn check(_server: &Server, ctx: &super::Context) -> super::CheckOutput {
    let d = ctx.drift;
    let state = if !d.domains.is_empty() && d.domains.iter().all(|x| x.status == "not_applicable") {
        super::CheckState::NotApplicable
    } else {
        super::state_from(&d.findings)
    };
    super::CheckOutput {
        findings: d.findings.clone(),
        state,
    }
}

/// A one-user server whose a.test is served through `sock` (fixture builder).
pub fn fixture_server(sock: &str, live: &[&str], layer: crate::model::Layer) -> Server {
    use crate::model::{Domain, HandlerKind, Location, PhpSlot, Vhost};
    let h = Handler {
        kind: HandlerKind::Nginx,
        raw_target: format!("unix:{sock}"),
        target: Target::Endpoint(Endpoint::Unix(sock.into())),
        source: Location {
            file: "/usr/local/directadmin/data/users/alice/domains/a.test.cust_nginx".into(),
            line: 2,
            text: format!("fastcgi_pass unix:{sock};"),
            start: 0,
            end: 0,
        },
        layer,
        generated_copies: vec![],
        location: Some("~ \\.php$".into()),
        shadowed: false,
        webapps: false,
        read_timeout: None,
    };
    let mut s = Server {
        webserver: Some("nginx".into()),
        php: vec![PhpSlot {
            slot: 1,
            release: "8.3".into(),
            mode: "php-fpm".into(),
            prefix: "/usr/local/php83".into(),
        }],
        ..Default::default()
    };
    s.users.push(User {
        name: "alice".into(),
        creator: None,
        usertype: None,
        domains: vec![Domain {
            name: "a.test".into(),
            parent: None,
            php_select: None,
            php_select_at: None,
            nginx_only: false,
            aliases: vec![],
            cust_nginx: None,
            vhosts: vec![Vhost {
                server_names: vec!["a.test".into()],
                https: false,
                file: "/n".into(),
                line: 1,
                handlers: vec![h],
                proxies: false,
                proxy_targets: vec![],
            }],
        }],
        pools: vec![],
        stray_vhosts: vec![],
    });
    for l in live {
        s.probes.insert(
            Endpoint::Unix((*l).into()),
            crate::probe::ProbeResult {
                state: SocketState::Listening,
                detail: String::new(),
                owner: None,
                mode: None,
                fcgi: None,
            },
        );
    }
    s
}

pub fn fixtures() -> Vec<super::Fixture> {
    use crate::model::Layer;
    let new = "/usr/local/php83/sockets/alice.sock";
    let old = "/usr/local/php82/sockets/alice.sock";
    let mut dead = fixture_server(old, &[new], Layer::Custom);
    dead.probes.insert(
        Endpoint::Unix(old.into()),
        crate::probe::ProbeResult {
            state: SocketState::Missing,
            detail: String::new(),
            owner: None,
            mode: None,
            fcgi: None,
        },
    );
    vec![
        super::Fixture {
            name: ".cust_nginx on the removed 8.2 socket",
            server: dead,
            triggers: true,
        },
        super::Fixture {
            name: "the expected 8.3 socket, live",
            server: fixture_server(new, &[new], Layer::Generated),
            triggers: false,
        },
        super::Fixture {
            name: "a 8.2 path that is the user's pool listen (deliberate, live)",
            server: {
                let mut s = fixture_server(old, &[old], Layer::Custom);
                s.users[0].pools.push(crate::model::Pool {
                    name: "alice".into(),
                    version_digits: "83".into(),
                    file: "/p".into(),
                    line: 1,
                    listen: Some(old.into()),
                    listen_owner: None,
                    listen_group: None,
                    listen_mode: None,
                    settings: vec![],
                });
                s
            },
            triggers: false,
        },
    ]
}

/// Runs the check over the model.
pub fn run(server: &Server) -> Output {
    let mut findings = Vec::new();
    let mut domains = Vec::new();
    for u in &server.users {
        for d in &u.domains {
            domains.push(domain_row(server, u, d, &mut findings));
        }
        for h in handlers(&u.stray_vhosts) {
            let exp = expected_socket(&server.php, &u.pools, &u.name, None);
            let name = u
                .stray_vhosts
                .iter()
                .find(|v| v.handlers.iter().any(|x| std::ptr::eq(x, h)));
            let dn = name
                .and_then(|v| v.server_names.first().cloned())
                .unwrap_or_default();
            if let Some(f) = judge(server, h, exp.socket.as_deref(), Some(&u.name), &dn) {
                findings.push(f);
            }
        }
    }
    let webapps = expected_webapps_socket(&server.php);
    for v in &server.global_vhosts {
        let name = v
            .server_names
            .first()
            .cloned()
            .unwrap_or_else(|| "(default server)".into());
        for h in &v.handlers {
            let expected = if h.webapps { webapps.as_deref() } else { None };
            if let Some(f) = judge(server, h, expected, None, &name) {
                findings.push(f);
            }
        }
    }
    Output {
        findings: merge(findings),
        domains,
    }
}

#[cfg(test)]
mod tests;
