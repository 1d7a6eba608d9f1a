//! Fixtures for `socket-drift`: cases that must trigger it and look-alikes
//! that must not. The model is built in memory: checks do no IO.

use super::*;
use crate::model::{HandlerKind, Layer, Location, PhpSlot, Pool};
use crate::probe::ProbeResult;

fn slot(n: u8, release: &str, mode: &str) -> PhpSlot {
    let prefix = if release == "no" {
        String::new()
    } else {
        format!("/usr/local/php{}", release.replace('.', ""))
    };
    PhpSlot {
        slot: n,
        release: release.into(),
        mode: mode.into(),
        prefix,
    }
}

fn loc(file: &str, line: u32, text: &str) -> Location {
    Location {
        file: file.into(),
        line,
        text: text.into(),
        start: 10,
        end: 10 + text.len(),
    }
}

fn handler(sock: &str, layer: Layer, file: &str) -> Handler {
    Handler {
        kind: HandlerKind::Nginx,
        raw_target: format!("unix:{sock}"),
        target: Target::Endpoint(Endpoint::Unix(sock.into())),
        source: loc(file, 3, &format!("fastcgi_pass unix:{sock};")),
        layer,
        generated_copies: vec![],
        location: Some("~ \\.php$".into()),
        shadowed: false,
        webapps: sock.ends_with("/webapps.sock"),
        read_timeout: None,
    }
}

fn vhost(handlers: Vec<Handler>) -> Vhost {
    Vhost {
        server_names: vec!["a.test".into()],
        https: false,
        file: "/n".into(),
        line: 1,
        handlers,
        proxies: false,
        proxy_targets: vec![],
    }
}

fn domain(name: &str, select: Option<u8>, handlers: Vec<Handler>) -> Domain {
    Domain {
        name: name.into(),
        parent: None,
        php_select: select,
        php_select_at: None,
        nginx_only: false,
        aliases: vec![],
        vhosts: vec![vhost(handlers)],
        cust_nginx: None,
    }
}

fn server(domains: Vec<Domain>, live: &[&str], dead: &[(&str, SocketState)]) -> Server {
    let mut s = Server {
        webserver: Some("nginx".into()),
        php: vec![slot(1, "8.3", "php-fpm"), slot(2, "no", "php-fpm")],
        ..Default::default()
    };
    s.users.push(User {
        name: "alice".into(),
        creator: Some("admin".into()),
        usertype: Some("user".into()),
        domains,
        pools: vec![],
        stray_vhosts: vec![],
    });
    for l in live {
        s.probes
            .insert(Endpoint::Unix((*l).into()), probe(SocketState::Listening));
    }
    for (d, st) in dead {
        s.probes.insert(Endpoint::Unix((*d).into()), probe(*st));
    }
    s
}

fn probe(state: SocketState) -> ProbeResult {
    ProbeResult {
        state,
        detail: String::new(),
        owner: None,
        mode: None,
        fcgi: None,
    }
}

const NEW: &str = "/usr/local/php83/sockets/alice.sock";
const OLD: &str = "/usr/local/php82/sockets/alice.sock";
const CUST: &str = "/usr/local/directadmin/data/users/alice/domains/a.test.cust_nginx";

#[test]
fn stale_custom_socket_is_critical_drift() {
    let s = server(
        vec![domain("a.test", None, vec![handler(OLD, Layer::Custom, CUST)])],
        &[NEW],
        &[(OLD, SocketState::Missing)],
    );
    let out = run(&s);
    assert_eq!(out.findings.len(), 1);
    let f = &out.findings[0];
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.layer, Some("custom"));
    assert_eq!(f.socket.as_deref(), Some(OLD));
    assert_eq!(f.socket_state, Some("missing"));
    assert_eq!(f.expected_socket.as_deref(), Some(NEW));
    assert_eq!(f.file.as_deref(), Some(CUST));
    assert_eq!(out.domains[0].status, "drift");
}

#[test]
fn healthy_expected_socket_is_ok() {
    let s = server(
        vec![domain("a.test", None, vec![handler(NEW, Layer::Generated, "/g")])],
        &[NEW],
        &[],
    );
    let out = run(&s);
    assert!(out.findings.is_empty(), "{:?}", out.findings);
    assert_eq!(out.domains[0].status, "ok");
}

#[test]
fn live_but_unexpected_socket_is_a_warning() {
    let other = "/usr/local/php74/sockets/alice.sock";
    let s = server(
        vec![domain("a.test", None, vec![handler(other, Layer::Custom, CUST)])],
        &[NEW, other],
        &[],
    );
    let out = run(&s);
    assert_eq!(out.findings[0].severity, Severity::Warning);
    assert_eq!(out.domains[0].status, "drift");
}

#[test]
fn pool_listen_wins_over_computed_path() {
    let custom = "/home/alice/.php/alice.sock";
    let mut s = server(
        vec![domain(
            "a.test",
            None,
            vec![handler(custom, Layer::Generated, "/g")],
        )],
        &[custom],
        &[],
    );
    s.users[0].pools.push(Pool {
        name: "alice".into(),
        version_digits: "83".into(),
        file: "/p".into(),
        line: 1,
        listen: Some(custom.into()),
        listen_owner: None,
        listen_group: None,
        listen_mode: None,
        settings: vec![],
    });
    let out = run(&s);
    assert!(out.findings.is_empty(), "{:?}", out.findings);
    assert_eq!(out.domains[0].expected_socket.as_deref(), Some(custom));
}

#[test]
fn expected_socket_dead_is_critical_with_fpm_hint() {
    let s = server(
        vec![domain("a.test", None, vec![handler(NEW, Layer::Generated, "/g")])],
        &[],
        &[(NEW, SocketState::Refused)],
    );
    let out = run(&s);
    assert_eq!(out.findings[0].severity, Severity::Critical);
    assert!(out.findings[0].message.contains("expected socket"));
}

#[test]
fn disabled_slot_is_flagged() {
    let s = server(vec![domain("a.test", Some(2), vec![])], &[], &[]);
    let out = run(&s);
    assert!(out.findings.iter().any(|f| f.message.contains("disabled")));
    assert_eq!(out.domains[0].status, "drift");
}

#[test]
fn lsphp_slot_is_not_applicable_and_never_ok() {
    let mut s = server(vec![domain("a.test", Some(3), vec![])], &[], &[]);
    s.php.push(slot(3, "7.4", "lsphp"));
    let out = run(&s);
    assert_eq!(out.domains[0].status, "not_applicable");
    let mut s = server(vec![domain("a.test", None, vec![])], &[], &[]);
    s.webserver = Some("litespeed".into());
    assert_eq!(run(&s).domains[0].status, "not_applicable");
}

#[test]
fn unresolved_variable_is_unknown_not_healthy() {
    let mut h = handler(NEW, Layer::Generated, "/g");
    h.target = Target::Unresolved("$sock is set by map".into());
    let s = server(vec![domain("a.test", None, vec![h])], &[NEW], &[]);
    let out = run(&s);
    assert_eq!(out.findings[0].severity, Severity::Unknown);
    assert_eq!(out.domains[0].status, "unknown");
}

#[test]
fn shadowed_dead_handler_is_only_info() {
    let mut dead = handler(OLD, Layer::Generated, "/g");
    dead.shadowed = true;
    let s = server(
        vec![domain(
            "a.test",
            None,
            vec![handler(NEW, Layer::Custom, CUST), dead],
        )],
        &[NEW],
        &[(OLD, SocketState::Missing)],
    );
    let out = run(&s);
    assert_eq!(out.findings.len(), 1);
    assert_eq!(out.findings[0].severity, Severity::Info);
    assert_eq!(out.domains[0].status, "ok");
}

#[test]
fn same_text_in_two_server_blocks_is_one_finding() {
    let mut h = handler(OLD, Layer::Custom, CUST);
    h.generated_copies = vec![loc("/u/nginx.conf", 20, "x")];
    let mut h2 = h.clone();
    h2.generated_copies = vec![loc("/u/nginx.conf", 60, "x")];
    let mut d = domain("a.test", None, vec![h]);
    d.vhosts.push(vhost(vec![h2]));
    let s = server(vec![d], &[NEW], &[(OLD, SocketState::Missing)]);
    let out = run(&s);
    assert_eq!(out.findings.len(), 1);
    assert_eq!(out.findings[0].generated_copies.len(), 2);
}

#[test]
fn webapps_handler_compared_with_webapps_socket() {
    let ok = "/usr/local/php83/sockets/webapps.sock";
    let s = server(
        vec![domain(
            "a.test",
            None,
            vec![
                handler(NEW, Layer::Generated, "/g"),
                handler(ok, Layer::Global, "/etc/nginx/webapps.conf"),
            ],
        )],
        &[NEW, ok],
        &[],
    );
    assert!(run(&s).findings.is_empty());
    let stale = "/usr/local/php82/sockets/webapps.sock";
    let s = server(
        vec![domain("a.test", None, vec![handler(stale, Layer::Overlay, "/o")])],
        &[NEW],
        &[(stale, SocketState::Missing)],
    );
    let out = run(&s);
    assert_eq!(out.findings[0].expected_socket.as_deref(), Some(ok));
    assert_eq!(out.findings[0].severity, Severity::Critical);
}

#[test]
fn not_probed_expected_is_ok_and_other_is_warning() {
    let s = server(
        vec![domain("a.test", None, vec![handler(NEW, Layer::Generated, "/g")])],
        &[],
        &[],
    );
    assert!(run(&s).findings.is_empty());
    let s = server(
        vec![domain("a.test", None, vec![handler(OLD, Layer::Custom, CUST)])],
        &[],
        &[],
    );
    let out = run(&s);
    assert_eq!(out.findings[0].severity, Severity::Warning);
    assert_eq!(out.findings[0].socket_state, Some("not_probed"));
}
