//! Bans of the addresses upstreams use (`loopback-banned`): CSF's deny and
//! tempban files, DA's Brute Force Monitor lists, fail2ban jails, iptables
//! and nftables rules. Only entries that cover 127.0.0.0/8, ::1 or one of
//! the server's own IPs are kept; the check decides whether an upstream
//! really crosses them.

use super::cmd;
use crate::config::{resolve_cmd, Config};
use crate::readers::Fs;
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

/// Which exempt lists apply to a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Csf,
    /// DA's login blacklist: blocks DA's own port only.
    DaLogin,
    /// BFM's `blocked_ips.txt` (fed to the firewall by DA's scripts).
    Bfm,
    Fail2ban,
    Iptables,
    Nft,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ban {
    pub family: Family,
    /// `127.0.0.1`, `127.0.0.0/8`, `::1`, or `lo` (a rule on the loopback interface).
    pub address: String,
    /// Ports the ban is limited to (empty = all); `None` = not a TCP port list (DA's login).
    pub ports: Option<Vec<u16>>,
    pub jail: Option<String>,
    /// Temporary (csf.tempban): removed with `csf -tr`.
    pub temporary: bool,
    pub file: String,
    pub line: Option<u32>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exempt {
    pub family: Family,
    pub address: String,
    pub file: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirewallEvidence {
    pub server_ips: Vec<String>,
    pub bans: Vec<Ban>,
    pub exempt: Vec<Exempt>,
    /// Sources that could not be read: (file or command, reason).
    pub unknowns: Vec<(String, String)>,
    /// Server paths of csf.allow and jail.local, and their current bytes
    /// (the repair's edits are computed from them).
    pub csf_allow_file: String,
    pub jail_local_file: String,
    #[serde(skip)]
    pub csf_allow: Option<Vec<u8>>,
    #[serde(skip)]
    pub jail_local: Option<Vec<u8>>,
}

/// `a.b.c.d[/n]` or an IPv6 address with an optional prefix.
pub fn parse_net(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: IpAddr = a.trim_matches(|c| c == '[' || c == ']').parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let p = p.unwrap_or(max);
    (p <= max).then_some((ip, p))
}

/// Does the network `net` (an address, CIDR or `lo`) contain `ip`?
pub fn covers(net: &str, ip: &IpAddr, server_ips: &[String]) -> bool {
    if net == "lo" {
        // Traffic to the server's own addresses travels over lo too.
        return ip.is_loopback()
            || server_ips
                .iter()
                .any(|s| s.parse::<IpAddr>().ok().as_ref() == Some(ip));
    }
    let Some((n, p)) = parse_net(net) else {
        return false;
    };
    match (n, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            u32::from(n) & m == u32::from(*i) & m
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            u128::from(n) & m == u128::from(*i) & m
        }
        _ => false,
    }
}

fn watched(server_ips: &[String]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    v.extend(server_ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()));
    v
}

fn relevant(addr: &str, server_ips: &[String]) -> bool {
    addr == "lo" || watched(server_ips).iter().any(|ip| covers(addr, ip, server_ips))
}

/// The address at the start of a list line (`1.2.3.4 # c`, `1.2.3.4=date=…`, `1.2.3.4|…`).
fn lead_addr(line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let a = t
        .split(|c: char| c.is_whitespace() || c == '=' || c == '#' || c == ',')
        .next()?;
    parse_net(a).map(|_| a.to_string())
}

/// CSF advanced filter `tcp|in|d=8080|s=127.0.0.1`: (address, ports).
fn csf_advanced(line: &str) -> Option<(String, Vec<u16>)> {
    let body = line.split('#').next()?.trim();
    if !body.contains('|') {
        return None;
    }
    let mut addr = None;
    let mut ports = Vec::new();
    for f in body.split('|') {
        if let Some(a) = f.strip_prefix("s=") {
            addr = Some(a.to_string());
        } else if let Some(p) = f.strip_prefix("d=") {
            ports.extend(p.split(['_', ',']).filter_map(|x| x.parse::<u16>().ok()));
        }
    }
    addr.filter(|a| parse_net(a).is_some()).map(|a| (a, ports))
}

/// Entries of a list file: (line number, address, text).
fn list_entries(text: &str) -> Vec<(u32, String, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| lead_addr(l).map(|a| ((i + 1) as u32, a, l.to_string())))
        .collect()
}

/// `time|ip|port|inout|timeout|message` lines of csf.tempban.
fn tempban_entries(text: &str) -> Vec<(u32, String, Vec<u16>, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let f: Vec<&str> = l.split('|').collect();
            let ip = f.get(1).filter(|a| parse_net(a).is_some())?;
            let ports = f
                .get(2)
                .map(|p| p.split([',', '_']).filter_map(|x| x.parse().ok()).collect())
                .unwrap_or_default();
            Some(((i + 1) as u32, ip.to_string(), ports, l.to_string()))
        })
        .collect()
}

/// DROP/REJECT rules of `iptables-save` on a loopback address or `-i lo`
/// (a negated `! -i lo` is the anti-spoofing rule: loopback traffic passes).
pub fn iptables_bans(text: &str, source: &str) -> Vec<Ban> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t: Vec<&str> = l.split_whitespace().collect();
        if t.first() != Some(&"-A") {
            continue;
        }
        let mut addr = None;
        let mut lo = false;
        let mut drop = false;
        let mut ports = Vec::new();
        let mut neg_lo = false;
        for k in 0..t.len() {
            let neg = k > 0 && t[k - 1] == "!";
            let next = t.get(k + 1).copied().unwrap_or("");
            match t[k] {
                "-s" | "--source" | "-d" | "--destination" if !neg => addr = Some(next.to_string()),
                "-i" | "--in-interface" if next == "lo" => {
                    if neg {
                        neg_lo = true
                    } else {
                        lo = true
                    }
                }
                "-j" => drop = matches!(next, "DROP" | "REJECT" | "TARPIT"),
                "--dport" | "--dports" | "--destination-port" => {
                    ports.extend(next.split([',', ':']).filter_map(|x| x.parse::<u16>().ok()))
                }
                _ => {}
            }
        }
        if !drop || neg_lo {
            continue;
        }
        let address = match (addr, lo) {
            (Some(a), _) => a,
            (None, true) => "lo".to_string(),
            (None, false) => continue,
        };
        out.push(Ban {
            family: Family::Iptables,
            address,
            ports: Some(ports),
            jail: None,
            temporary: false,
            file: source.to_string(),
            line: Some((i + 1) as u32),
            text: l.to_string(),
        });
    }
    out
}

/// `drop`/`reject` rules of `nft list ruleset` on loopback (`iif "lo"`,
/// `ip saddr 127.0.0.1`, …); `!=` negations are skipped.
pub fn nft_bans(text: &str, source: &str) -> Vec<Ban> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let t: Vec<&str> = l.split_whitespace().collect();
        if !t.iter().any(|w| *w == "drop" || *w == "reject") {
            continue;
        }
        let mut addr = None;
        let mut neg_lo = false;
        let mut ports = Vec::new();
        for k in 0..t.len() {
            let next = t.get(k + 1).copied().unwrap_or("");
            match t[k] {
                "iif" | "iifname" if next == "!=" => {
                    neg_lo |= t.get(k + 2).map(|x| x.trim_matches('"')) == Some("lo")
                }
                "iif" | "iifname" if next.trim_matches('"') == "lo" => addr = addr.or(Some("lo".to_string())),
                "saddr" | "daddr" if next != "!=" && parse_net(next).is_some() => {
                    addr = Some(next.to_string())
                }
                "dport" => {
                    let rest = if next == "{" {
                        &t[k + 2..]
                    } else {
                        &t[k + 1..k + 2]
                    };
                    for w in rest {
                        if *w == "}" {
                            break;
                        }
                        if let Ok(p) = w.trim_matches(',').parse::<u16>() {
                            ports.push(p);
                        }
                    }
                }
                _ => {}
            }
        }
        if neg_lo {
            continue;
        }
        if let Some(a) = addr {
            out.push(Ban {
                family: Family::Nft,
                address: a,
                ports: Some(ports),
                jail: None,
                temporary: false,
                file: source.to_string(),
                line: Some((i + 1) as u32),
                text: l.trim().to_string(),
            });
        }
    }
    out
}

/// Jail names of `fail2ban-client status`.
pub fn fail2ban_jails(text: &str) -> Vec<String> {
    text.lines()
        .find_map(|l| l.split_once("Jail list:").map(|x| x.1))
        .map(|s| {
            s.split(',')
                .map(|j| j.trim().to_string())
                .filter(|j| !j.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Banned addresses of `fail2ban-client status <jail>`.
pub fn fail2ban_banned(text: &str) -> Vec<String> {
    text.lines()
        .find_map(|l| l.split_once("Banned IP list:").map(|x| x.1))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `ignoreip = a b c` lines of jail.local (any section).
pub fn fail2ban_ignoreip(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "ignoreip").then(|| {
                v.split([' ', ',', '\t'])
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect()
}

/// Reads every source named in `[firewall]`.
pub fn collect(cfg: &Config) -> FirewallEvidence {
    let f = &cfg.firewall;
    let fs = Fs::new(cfg);
    let mut ev = FirewallEvidence {
        csf_allow_file: f.csf_allow.clone(),
        jail_local_file: f.fail2ban_jail_local.clone(),
        ..Default::default()
    };
    let read = |path: &str, ev: &mut FirewallEvidence| -> Option<String> {
        match fs.read(path) {
            Ok(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            Ok(None) => None,
            Err(e) => {
                ev.unknowns.push((path.to_string(), e));
                None
            }
        }
    };
    if let Some(t) = read(&f.server_ips, &mut ev) {
        ev.server_ips = list_entries(&t).into_iter().map(|(_, a, _)| a).collect();
    }
    let ips = ev.server_ips.clone();
    let lists: [(&str, Family, bool); 4] = [
        (&f.csf_deny, Family::Csf, false),
        (&f.da_ip_blacklist, Family::DaLogin, false),
        (&f.bfm_blocked, Family::Bfm, false),
        (&f.csf_tempban, Family::Csf, true),
    ];
    for (path, family, temporary) in lists {
        let Some(t) = read(path, &mut ev) else { continue };
        let entries: Vec<(u32, String, Vec<u16>, String)> = if temporary {
            tempban_entries(&t)
        } else {
            t.lines()
                .enumerate()
                .filter_map(|(i, l)| {
                    let (a, p) = csf_advanced(l).or_else(|| lead_addr(l).map(|a| (a, vec![])))?;
                    Some(((i + 1) as u32, a, p, l.to_string()))
                })
                .collect()
        };
        for (line, address, ports, text) in entries {
            if relevant(&address, &ips) {
                ev.bans.push(Ban {
                    family,
                    address,
                    ports: (family != Family::DaLogin).then_some(ports),
                    jail: None,
                    temporary,
                    file: path.to_string(),
                    line: Some(line),
                    text,
                });
            }
        }
    }
    for (path, family) in [
        (&f.csf_allow, Family::Csf),
        (&f.csf_ignore, Family::Csf),
        (&f.da_ip_whitelist, Family::DaLogin),
        (&f.bfm_exempt, Family::Bfm),
        (&f.brute_skip, Family::Bfm),
    ] {
        let Some(t) = read(path, &mut ev) else { continue };
        if *path == f.csf_allow {
            ev.csf_allow = Some(t.clone().into_bytes());
        }
        for (_, address, _) in list_entries(&t) {
            ev.exempt.push(Exempt {
                family,
                address,
                file: path.to_string(),
            });
        }
    }
    if let Some(t) = read(&f.fail2ban_jail_local, &mut ev) {
        for address in fail2ban_ignoreip(&t) {
            ev.exempt.push(Exempt {
                family: Family::Fail2ban,
                address,
                file: f.fail2ban_jail_local.clone(),
            });
        }
        ev.jail_local = Some(t.into_bytes());
    }
    let live = cfg.is_live_root();
    let timeout = Duration::from_secs(f.timeout_secs.max(1));
    let default_of = |name: &str, args: &str| {
        cmd::find_in_path(&[name])
            .map(|p| format!("{p}{args}"))
            .unwrap_or_default()
    };
    let run = |line: &str, extra: &[&str], ev: &mut FirewallEvidence| -> Option<String> {
        let r = cmd::argv(line, &[]).and_then(|mut a| {
            a.extend(extra.iter().map(|s| s.to_string()));
            cmd::capture(&a, timeout)
        });
        match r {
            Ok(c) if c.ok => Some(c.stdout),
            Ok(c) => {
                ev.unknowns.push((
                    line.to_string(),
                    c.stderr.trim().lines().last().unwrap_or("failed").to_string(),
                ));
                None
            }
            Err(e) => {
                ev.unknowns.push((line.to_string(), e));
                None
            }
        }
    };
    if let Some(c) = resolve_cmd(live, &f.fail2ban_client, &default_of("fail2ban-client", "")) {
        if let Some(out) = run(&c, &["status"], &mut ev) {
            for jail in fail2ban_jails(&out) {
                let Some(st) = run(&c, &["status", &jail], &mut ev) else {
                    continue;
                };
                for address in fail2ban_banned(&st) {
                    if relevant(&address, &ips) {
                        ev.bans.push(Ban {
                            family: Family::Fail2ban,
                            text: format!("jail {jail}: {address}"),
                            address,
                            ports: Some(vec![]),
                            jail: Some(jail.clone()),
                            temporary: true,
                            file: format!("{c} status {jail}"),
                            line: None,
                        });
                    }
                }
            }
        }
    }
    for (set, name) in [
        (&f.iptables_save, "iptables-save"),
        (&f.ip6tables_save, "ip6tables-save"),
    ] {
        if let Some(c) = resolve_cmd(live, set, &default_of(name, "")) {
            if let Some(out) = run(&c, &[], &mut ev) {
                ev.bans.extend(
                    iptables_bans(&out, &c)
                        .into_iter()
                        .filter(|b| relevant(&b.address, &ips)),
                );
            }
        }
    }
    if let Some(c) = resolve_cmd(live, &f.nft_list, &default_of("nft", " list ruleset")) {
        if let Some(out) = run(&c, &[], &mut ev) {
            ev.bans.extend(
                nft_bans(&out, &c)
                    .into_iter()
                    .filter(|b| relevant(&b.address, &ips)),
            );
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets_cover_addresses() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(covers("127.0.0.0/8", &ip, &[]));
        assert!(covers("127.0.0.1", &ip, &[]));
        assert!(!covers("10.0.0.0/8", &ip, &[]));
        assert!(covers("::1", &"::1".parse().unwrap(), &[]));
        assert!(covers("lo", &"1.2.3.4".parse().unwrap(), &["1.2.3.4".into()]));
        assert!(!covers("lo", &"1.2.3.5".parse().unwrap(), &["1.2.3.4".into()]));
    }

    #[test]
    fn csf_and_da_lists() {
        assert_eq!(lead_addr("127.0.0.1 # lfd: blocked"), Some("127.0.0.1".into()));
        assert_eq!(
            lead_addr("1.2.3.4=dateblocked=1700000000"),
            Some("1.2.3.4".into())
        );
        assert_eq!(lead_addr("# 127.0.0.1"), None);
        assert_eq!(lead_addr("Include /etc/csf/x"), None);
        assert_eq!(
            csf_advanced("tcp|in|d=8080|s=127.0.0.1 # manual"),
            Some(("127.0.0.1".into(), vec![8080]))
        );
        let t = tempban_entries("1700000000|127.0.0.1|8080|in|3600|lfd: many 403s\n");
        assert_eq!(t[0].1, "127.0.0.1");
        assert_eq!(t[0].2, vec![8080]);
    }

    #[test]
    fn iptables_drop_on_loopback_but_not_the_anti_spoof_rule() {
        let out = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n\
-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP\n\
-A DENYIN -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j DROP\n\
-A INPUT -i lo -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n";
        let b = iptables_bans(out, "iptables-save");
        assert_eq!(b.len(), 2, "{b:#?}");
        assert_eq!(b[0].address, "127.0.0.1/32");
        assert_eq!(b[0].ports, Some(vec![8080]));
        assert_eq!(b[1].address, "lo");
    }

    #[test]
    fn nft_rules() {
        let out = "table inet filter {\n\tchain input {\n\t\tiif \"lo\" accept\n\
\t\tiif != \"lo\" ip saddr 127.0.0.0/8 drop\n\t\tip saddr 127.0.0.1 tcp dport { 80, 8080 } drop\n\
\t\tiifname \"lo\" reject\n\t}\n}\n";
        let b = nft_bans(out, "nft");
        assert_eq!(b.len(), 2, "{b:#?}");
        assert_eq!(b[0].address, "127.0.0.1");
        assert_eq!(b[0].ports, Some(vec![80, 8080]));
        assert_eq!(b[1].address, "lo");
    }

    #[test]
    fn fail2ban_output() {
        let st = "Status\n|- Number of jail:\t2\n`- Jail list:\tsshd, nginx-limit-req\n";
        assert_eq!(fail2ban_jails(st), vec!["sshd", "nginx-limit-req"]);
        let j = "Status for the jail: sshd\n|- Filter\n|  |- Currently failed:\t0\n`- Actions\n   |- Currently banned:\t2\n   `- Banned IP list:\t127.0.0.1 203.0.113.9\n";
        assert_eq!(fail2ban_banned(j), vec!["127.0.0.1", "203.0.113.9"]);
        assert_eq!(
            fail2ban_ignoreip("[DEFAULT]\nignoreip = 127.0.0.1/8 ::1\n"),
            vec!["127.0.0.1/8", "::1"]
        );
    }
}
