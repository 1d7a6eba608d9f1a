//! `apache-upstream`: in nginx_apache mode nginx proxies every request to
//! Apache; when Apache is down or refuses, every site answers 502.

use super::{CheckDoc, CheckOutput, CheckState, Finding, Severity};
use crate::evidence::upstream::{target_of, HttpProbe};
use crate::model::Server;
use std::collections::BTreeMap;

pub const ID: &str = "apache-upstream";

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "Apache behind nginx is down or refuses connections",
    what: "In `webserver=nginx_apache` mode, collects the `proxy_pass` target of every user's vhost \
(`http://<server IP>:8080`), connects to each distinct one (TCP, then `HEAD /`), and names the domains behind a \
target that refuses or does not answer. nginx error-log lines `connect() to 1.2.3.4:8080 failed (111: \
Connection refused) while connecting to upstream` on an `http://` upstream are linked here by log-triage.",
    why: "nginx only relays to Apache; if httpd is stopped, crashed, or listens on another address or port, \
nginx answers 502 Bad Gateway (errno 111) or 504 (errno 110) for every proxied site at once, while PHP-FPM \
itself may be healthy.",
    example: "`proxy_pass http://203.0.113.5:8080;` in alice's nginx.conf; connect() to 203.0.113.5:8080: \
Connection refused → 502 for alice.test and 40 other domains.",
    fix: "Start or restart Apache (`systemctl restart httpd`, or `apachectl start`), read its error log \
(`/var/log/httpd/error_log`) for why it stopped, and check that `Listen` matches the port DirectAdmin writes \
in `proxy_pass` (`port_8080` in directadmin.conf).",
    fix_safety: "No automatic fix: restarting a web server is a person's decision.",
};

/// Registry entry point.
pub fn check(server: &Server, _ctx: &super::Context) -> CheckOutput {
    let na = CheckOutput {
        findings: vec![],
        state: CheckState::NotApplicable,
    };
    if server.webserver.as_deref() != Some("nginx_apache") {
        return na;
    }
    let Some(probes) = &server.evidence.apache else {
        return na;
    };
    run(server, probes)
}

pub fn run(server: &Server, probes: &[HttpProbe]) -> CheckOutput {
    // target → (domains, users)
    let mut uses: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for u in &server.users {
        for d in &u.domains {
            for v in &d.vhosts {
                for t in v.proxy_targets.iter().filter_map(|p| target_of(p)) {
                    let e = uses.entry(t).or_default();
                    if !e.0.contains(&d.name) {
                        e.0.push(d.name.clone());
                    }
                    if !e.1.contains(&u.name) {
                        e.1.push(u.name.clone());
                    }
                }
            }
        }
    }
    let mut findings = Vec::new();
    let mut unprobed = false;
    for p in probes {
        let (domains, users) = uses.get(&p.target).cloned().unwrap_or_default();
        let (sev, msg) = match p.state {
            "answers" => match &p.status_line {
                Some(l) if l.starts_with("HTTP/") => continue,
                _ => (
                    Severity::Warning,
                    format!("{} accepts connections but does not answer HTTP: {}", p.target, p.detail),
                ),
            },
            "not_probed" => {
                unprobed = true;
                (Severity::Info, format!("Apache at {} was not probed: {}", p.target, p.detail))
            }
            "refused" => (
                Severity::Critical,
                format!(
                    "Apache at {} refuses connections (nothing listens): nginx answers 502 for {} domain(s)",
                    p.target,
                    domains.len()
                ),
            ),
            "timeout" => (
                Severity::Critical,
                format!(
                    "Apache at {} does not accept connections in time (down, overloaded or filtered): nginx answers 502/504 for {} domain(s)",
                    p.target,
                    domains.len()
                ),
            ),
            _ => (Severity::Critical, format!("cannot reach Apache at {}: {}", p.target, p.detail)),
        };
        let mut f = Finding::new(ID, sev, msg);
        f.socket = Some(p.target.clone());
        f.socket_state = Some(p.state);
        f.socket_detail = Some(p.detail.clone()).filter(|d| !d.is_empty());
        if users.len() == 1 {
            f.user = users.first().cloned();
        }
        if domains.len() == 1 {
            f.domain = domains.first().cloned();
        }
        f.affected_domains = domains;
        findings.push(f);
    }
    let mut state = super::state_from(&findings);
    if state == CheckState::Ok && unprobed {
        state = CheckState::Unknown;
    }
    CheckOutput { findings, state }
}

/// An nginx_apache (or pure nginx) server whose a.test proxies to
/// `127.0.0.1:8080`, probed as `state` (fixture builder).
pub fn fixture_server(webserver: &str, state: &'static str) -> Server {
    let mut s = super::socket_drift::fixture_server(
        "/usr/local/php83/sockets/alice.sock",
        &["/usr/local/php83/sockets/alice.sock"],
        crate::model::Layer::Generated,
    );
    s.webserver = Some(webserver.into());
    let v = &mut s.users[0].domains[0].vhosts[0];
    v.proxies = true;
    v.proxy_targets = vec!["http://127.0.0.1:8080".into()];
    s.evidence.apache = Some(vec![HttpProbe {
        target: "127.0.0.1:8080".into(),
        state,
        detail: "connect() to 127.0.0.1:8080: Connection refused (os error 111)".into(),
        status_line: (state == "answers").then(|| "HTTP/1.1 200 OK".into()),
    }]);
    s
}

pub fn fixtures() -> Vec<super::Fixture> {
    vec![
        super::Fixture {
            name: "nginx_apache, Apache refuses on 127.0.0.1:8080",
            server: fixture_server("nginx_apache", "refused"),
            triggers: true,
        },
        super::Fixture {
            name: "nginx_apache, Apache answers",
            server: fixture_server("nginx_apache", "answers"),
            triggers: false,
        },
        super::Fixture {
            name: "pure nginx mode: not applicable even with a refusing port",
            server: fixture_server("nginx", "refused"),
            triggers: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_domains_behind_a_dead_apache() {
        let s = fixture_server("nginx_apache", "refused");
        let out = run(&s, s.evidence.apache.as_ref().unwrap());
        assert_eq!(out.findings[0].affected_domains, vec!["a.test"]);
        assert_eq!(out.findings[0].user.as_deref(), Some("alice"));
        let s = fixture_server("nginx_apache", "not_probed");
        assert_eq!(
            run(&s, s.evidence.apache.as_ref().unwrap()).state,
            CheckState::Unknown
        );
    }
}
