//! `loopback-banned`: a firewall or ban list blocks an address that nginx
//! reaches an upstream on over TCP (127.0.0.1, ::1, the server's own IPs).

use super::{BanRef, CheckDoc, CheckOutput, CheckState, Finding, Severity};
use crate::evidence::firewall::{covers, Ban, Family, FirewallEvidence};
use crate::evidence::mysql::MysqlEvidence;
use crate::model::{Server, Target};
use crate::probe::Endpoint;
use std::net::IpAddr;

pub const ID: &str = "loopback-banned";

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "The firewall bans an address an upstream uses",
    what: "Looks for 127.0.0.1, ::1 and the server's own IPs (DA's `data/admin/ips.list`) in CSF \
(`/etc/csf/csf.deny`, `/var/lib/csf/csf.tempban`; `csf.allow`/`csf.ignore` exempt), DirectAdmin's Brute Force \
Monitor lists (`/root/blocked_ips.txt`, exempt `/root/exempt_ips.txt`, `data/admin/brute_skip.list`; \
`data/admin/ip_blacklist` only guards DA's own login), fail2ban jails (`fail2ban-client status`) and \
iptables/nftables DROP/REJECT rules on loopback. A ban is blamed only when an upstream really crosses it over \
TCP: nginx_apache's `proxy_pass` to Apache, a TCP FastCGI listener (`fastcgi_pass 127.0.0.1:9000`), MySQL on \
127.0.0.1. Unix sockets never cross the firewall.",
    why: "A brute-force rule that counts nginx's own requests to Apache (they all come from the server's IP) \
bans that IP, and every proxied request fails: nginx logs `connect() … failed (110: Connection timed out)` or \
`(111: Connection refused)` and answers 502/504 for every site at once.",
    example: "`/etc/csf/csf.deny:12: 127.0.0.1 # lfd: (apache-403) …` while every vhost has \
`proxy_pass http://127.0.0.1:8080`.",
    fix: "Unban the address (`csf -dr IP` / `csf -tr IP`, `fail2ban-client set JAIL unbanip IP`) and exempt it \
for good (`csf.allow`, fail2ban `ignoreip` in `jail.local`). Rules in iptables/nftables or BFM lists are \
shown for a person to remove.",
    fix_safety: "Needs confirmation (admin): it changes the firewall. The allow-list edit goes through the \
apply protocol (backup, undo); the unban commands cannot be undone, but only lift a ban.",
};

/// One TCP upstream: the address, port and what uses it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub ip: IpAddr,
    pub port: u16,
    pub what: String,
    pub domains: Vec<String>,
}

fn ips_of(host: &str) -> Vec<IpAddr> {
    if host == "localhost" {
        return vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    }
    host.trim_matches(|c| c == '[' || c == ']')
        .parse()
        .into_iter()
        .collect()
}

fn add(out: &mut Vec<Upstream>, host: &str, port: u16, what: String, domain: Option<&str>) {
    for ip in ips_of(host) {
        match out.iter_mut().find(|u| u.ip == ip && u.port == port) {
            Some(u) => {
                if let Some(d) = domain {
                    if !u.domains.iter().any(|x| x == d) {
                        u.domains.push(d.to_string());
                    }
                }
            }
            None => out.push(Upstream {
                ip,
                port,
                what: what.clone(),
                domains: domain.map(str::to_string).into_iter().collect(),
            }),
        }
    }
}

/// Every address:port something reaches over TCP.
pub fn upstreams(server: &Server) -> Vec<Upstream> {
    let mut out = Vec::new();
    let per_domain = server.users.iter().flat_map(|u| {
        u.domains
            .iter()
            .flat_map(|d| d.vhosts.iter().map(move |v| (Some(d.name.as_str()), v)))
    });
    let global = server.global_vhosts.iter().map(|v| (None, v));
    for (d, v) in per_domain.chain(global) {
        for h in &v.handlers {
            if let Target::Endpoint(Endpoint::Tcp { host, port }) = &h.target {
                add(&mut out, host, *port, format!("FastCGI {host}:{port}"), d);
            }
        }
        for p in &v.proxy_targets {
            if let Some(t) = crate::evidence::upstream::target_of(p) {
                if let Some((h, port)) = t.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse().ok()?))) {
                    add(&mut out, h, port, format!("proxy_pass {p}"), d);
                }
            }
        }
    }
    if let Some(MysqlEvidence::Ok(s)) = &server.evidence.mysql {
        if let Some((h, port)) = s.tcp.as_deref().and_then(|t| t.rsplit_once(':')) {
            if let Ok(port) = port.parse() {
                add(&mut out, h, port, format!("MySQL {h}:{port}"), None);
            }
        }
    }
    out
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::Csf => "CSF",
        Family::DaLogin => "DirectAdmin's login blacklist",
        Family::Bfm => "DirectAdmin's Brute Force Monitor",
        Family::Fail2ban => "fail2ban",
        Family::Iptables => "iptables",
        Family::Nft => "nftables",
    }
}

fn hits<'a>(ban: &Ban, ups: &'a [Upstream], server_ips: &[String]) -> Vec<&'a Upstream> {
    ups.iter()
        .filter(|u| covers(&ban.address, &u.ip, server_ips))
        .filter(|u| match &ban.ports {
            None => false,
            Some(p) => p.is_empty() || p.contains(&u.port),
        })
        .collect()
}

/// Registry entry point.
pub fn check(server: &Server, _ctx: &super::Context) -> CheckOutput {
    match &server.evidence.firewall {
        None => CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        },
        Some(fw) => run(server, fw),
    }
}

pub fn run(server: &Server, fw: &FirewallEvidence) -> CheckOutput {
    let ups = upstreams(server);
    let mut findings = Vec::new();
    for b in &fw.bans {
        let hit = hits(b, &ups, &fw.server_ips);
        let exempt = fw.exempt.iter().find(|e| {
            e.family == b.family
                && (hit.iter().any(|u| covers(&e.address, &u.ip, &[]))
                    || crate::evidence::firewall::parse_net(&b.address)
                        .is_some_and(|(ip, _)| covers(&e.address, &ip, &[])))
        });
        let place = match b.line {
            Some(l) => format!("{}:{l}", b.file),
            None => b.file.clone(),
        };
        let what: Vec<String> = hit.iter().map(|u| u.what.clone()).collect();
        let (sev, msg) = match (hit.is_empty(), exempt) {
            (false, None) => (
                Severity::Critical,
                format!(
                    "{} bans {} ({place}) and {} over it: those requests fail (502/504)",
                    family_name(b.family),
                    b.address,
                    what.join(", ")
                ),
            ),
            (false, Some(e)) => (
                Severity::Info,
                format!(
                    "{} lists {} ({place}), but {} exempts it",
                    family_name(b.family),
                    b.address,
                    e.file
                ),
            ),
            (true, _) => (
                Severity::Info,
                format!(
                    "{} bans {} ({place}), but no upstream reaches it over TCP (unix sockets never cross the firewall{}): not a cause of 502s",
                    family_name(b.family),
                    b.address,
                    if b.ports.is_none() { "; this list guards DirectAdmin's own login only" } else { "" }
                ),
            ),
        };
        let mut f = Finding::new(ID, sev, msg);
        f.file = Some(b.file.clone());
        f.line = b.line;
        f.text = Some(b.text.clone());
        f.socket = hit.first().map(|u| match u.ip {
            IpAddr::V6(ip) => format!("[{ip}]:{}", u.port),
            IpAddr::V4(ip) => format!("{ip}:{}", u.port),
        });
        let mut domains: Vec<String> = hit.iter().flat_map(|u| u.domains.clone()).collect();
        domains.sort();
        domains.dedup();
        f.affected_domains = domains;
        f.ban = Some(BanRef {
            family: b.family,
            address: b.address.clone(),
            jail: b.jail.clone(),
            temporary: b.temporary,
        });
        findings.push(f);
    }
    for (src, why) in &fw.unknowns {
        let mut f = Finding::new(ID, Severity::Unknown, format!("cannot read {src}: {why}"));
        f.file = Some(src.clone());
        f.secondary = true;
        findings.push(f);
    }
    let state = super::state_from(&findings);
    CheckOutput { findings, state }
}

/// A server whose a.test is served via `fastcgi` (unix or TCP) and proxied to
/// `proxy` (nginx_apache), with `ban` in csf.deny (fixture builder).
pub fn fixture_server(fastcgi: Endpoint, proxy: Option<&str>, ban: &str) -> Server {
    let mut s = super::socket_drift::fixture_server(
        "/usr/local/php83/sockets/alice.sock",
        &[],
        crate::model::Layer::Generated,
    );
    let v = &mut s.users[0].domains[0].vhosts[0];
    v.handlers[0].target = Target::Endpoint(fastcgi);
    if let Some(p) = proxy {
        s.webserver = Some("nginx_apache".into());
        v.proxies = true;
        v.proxy_targets = vec![p.to_string()];
    }
    s.evidence.firewall = Some(FirewallEvidence {
        bans: vec![Ban {
            family: Family::Csf,
            address: ban.into(),
            ports: Some(vec![]),
            jail: None,
            temporary: false,
            file: "/etc/csf/csf.deny".into(),
            line: Some(3),
            text: format!("{ban} # lfd: (apache-403) blocked"),
        }],
        csf_allow_file: "/etc/csf/csf.allow".into(),
        jail_local_file: "/etc/fail2ban/jail.local".into(),
        ..Default::default()
    });
    s
}

pub fn fixtures() -> Vec<super::Fixture> {
    let sock = Endpoint::Unix("/usr/local/php83/sockets/alice.sock".into());
    let tcp = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: 9000,
    };
    vec![
        super::Fixture {
            name: "127.0.0.1 in csf.deny, nginx proxies to Apache on 127.0.0.1:8080",
            server: fixture_server(sock.clone(), Some("http://127.0.0.1:8080"), "127.0.0.1"),
            triggers: true,
        },
        super::Fixture {
            name: "127.0.0.0/8 banned, PHP-FPM on 127.0.0.1:9000",
            server: fixture_server(tcp, None, "127.0.0.0/8"),
            triggers: true,
        },
        super::Fixture {
            name: "127.0.0.1 banned, but every upstream is a unix socket",
            server: fixture_server(sock.clone(), None, "127.0.0.1"),
            triggers: false,
        },
        super::Fixture {
            name: "127.0.0.1 banned and proxied to, but csf.allow lists it",
            server: {
                let mut s = fixture_server(sock, Some("http://127.0.0.1:8080"), "127.0.0.1");
                if let Some(fw) = &mut s.evidence.firewall {
                    fw.exempt.push(crate::evidence::firewall::Exempt {
                        family: Family::Csf,
                        address: "127.0.0.1".into(),
                        file: "/etc/csf/csf.allow".into(),
                    });
                }
                s
            },
            triggers: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blames_only_bans_an_upstream_crosses() {
        let f = &fixtures()[0].server;
        let out = run(f, f.evidence.firewall.as_ref().unwrap());
        assert_eq!(out.findings[0].severity, Severity::Critical);
        assert_eq!(out.findings[0].socket.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(out.findings[0].affected_domains, vec!["a.test"]);
        let f = &fixtures()[2].server;
        let out = run(f, f.evidence.firewall.as_ref().unwrap());
        assert_eq!(out.findings[0].severity, Severity::Info);
        assert!(out.findings[0].message.contains("unix sockets"));
    }

    #[test]
    fn a_port_limited_ban_on_another_port_is_no_cause() {
        let mut s = fixtures()[0].server.clone();
        if let Some(fw) = &mut s.evidence.firewall {
            fw.bans[0].ports = Some(vec![22]);
        }
        let out = run(&s, s.evidence.firewall.as_ref().unwrap());
        assert_eq!(out.findings[0].severity, Severity::Info);
    }
}
