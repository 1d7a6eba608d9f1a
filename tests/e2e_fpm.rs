//! The FPM checks against real daemons (see `support`): a really exhausted
//! pool (errno 11), a really killed master (errno 111), a really
//! unreachable socket (errno 13), each followed by the scanner's verdict.

mod support;

use fpm_doctor::sim::{self, NginxRuntime, SimServer};
use serde_json::Value;
use support::{free_port, self_signed_cert, Daemons, Stop};

const ALICE_POOL: &str = "/usr/local/directadmin/data/users/alice/php/php-fpm82.conf";
const ALICE_SOCK: &str = "/usr/local/php82/sockets/alice.sock";
const ALICE_DOCROOT: &str = "/home/alice/domains/alice.test/public_html";

/// Field order matters: the daemons are stopped before the tree is deleted.
struct Scenario {
    d: Daemons,
    _tmp: tempfile::TempDir,
}

/// The drift demo on PHP 8.2 (no upgrade: alice's `.cust_nginx` names the
/// right socket), with `edit` applied to alice's pool before FPM starts.
fn start(edit: impl FnOnce(&str) -> String) -> Scenario {
    support::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_cert(&tmp.path().join(".test-cert"));
    let mut s = SimServer::drift_demo();
    s.runtime = Some(NginxRuntime {
        http_port: free_port(),
        https_port: free_port(),
        ssl_cert: Some(cert),
        ssl_key: Some(key),
        ..NginxRuntime::default()
    });
    sim::write_tree(tmp.path(), &s).unwrap();
    let pool = tmp.path().join(&ALICE_POOL[1..]);
    let text = std::fs::read_to_string(&pool).unwrap();
    std::fs::write(&pool, edit(&text)).unwrap();
    std::fs::write(
        tmp.path().join(&ALICE_DOCROOT[1..]).join("sleep.php"),
        "<?php usleep(2500000); echo \"slept\\n\";\n",
    )
    .unwrap();
    let mut d = Daemons::start(tmp.path());
    d.start_fpm("8.2");
    d.start_nginx();
    Scenario { d, _tmp: tmp }
}

fn parse(out: std::process::Output) -> Value {
    support::json_output(out).1
}

/// `fpm-doctor scan --root T --json` from outside (an offline view: no /proc).
fn scan_root(d: &Daemons) -> Value {
    support::fpm_doctor_json(&["scan"], d.root()).1
}

/// `fpm-doctor scan --json` inside the daemons' namespace, where the tree is
/// the server's `/`: live /proc, real pids, real workers.
fn scan_live(d: &Daemons) -> Value {
    parse(d.run(env!("CARGO_BIN_EXE_fpm-doctor"), &["scan", "--json"]))
}

fn findings<'a>(j: &'a Value, check: &str) -> Vec<&'a Value> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

fn triage<'a>(j: &'a Value, domain: &str, errno_text: &str) -> &'a Value {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["check"] == "log-triage"
                && f["domain"] == domain
                && f["message"].as_str().unwrap_or("").contains(errno_text)
        })
        .unwrap_or_else(|| {
            panic!(
                "no log-triage group {errno_text} for {domain}\n{}",
                serde_json::to_string_pretty(j).unwrap()
            )
        })
}

#[test]
fn exhausted_pool_gives_errno_11_and_a_sized_finding() {
    // One worker, a backlog of one: the third concurrent request finds the
    // queue full. FPM logs the max_children warning only for dynamic (and,
    // reworded, ondemand) pools: static pools never spawn, so never warn.
    let sc = start(|t| {
        t.replace(
            "pm = ondemand\npm.max_children = 10\npm.process_idle_timeout = 20\n",
            "pm = dynamic\npm.max_children = 1\npm.start_servers = 1\npm.min_spare_servers = 1\n\
             pm.max_spare_servers = 1\nlisten.backlog = 1\n",
        )
    });
    let d = &sc.d;
    assert_eq!(d.get(false, "alice.test", "/index.php").status, 200);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| s.spawn(|| d.get(false, "alice.test", "/sleep.php").status))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.contains(&502) && statuses.contains(&200),
        "some slow requests must be served, some refused: {statuses:?}\n{}",
        d.nginx_errors()
    );
    let errs = d.nginx_errors();
    assert!(
        errs.contains(&format!(
            "connect() to unix:{ALICE_SOCK} failed (11: Resource temporarily unavailable)"
        )),
        "nginx must log errno 11:\n{errs}"
    );
    let fpm_log = std::fs::read_to_string(d.host("/var/log/php-fpm82.log")).unwrap();
    assert!(
        fpm_log.contains("[pool alice] server reached pm.max_children setting (1)"),
        "FPM must log the max_children warning:\n{fpm_log}"
    );

    let j = scan_live(d);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    let pe = findings(&j, "pool-exhausted");
    let f = pe
        .iter()
        .find(|f| f["severity"] == "critical" || f["severity"] == "warning")
        .unwrap_or_else(|| panic!("no pool-exhausted finding\n{pretty}"));
    assert_eq!(f["user"], "alice", "{pretty}");
    assert_eq!(f["socket"], ALICE_SOCK, "{pretty}");
    assert_eq!(f["domain"], "alice.test", "{pretty}");
    assert!(f["count"].as_u64().unwrap() >= 1, "{pretty}");
    assert!(f["last_seen"].is_string(), "{pretty}");
    assert!(
        f["log_line"].as_str().unwrap().contains("[pool alice]"),
        "{pretty}"
    );
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("pm.max_children = 1"), "{pretty}");
    assert!(
        msg.contains("PSS")
            && msg.contains("MemAvailable")
            && msg.contains("memory allows pm.max_children ≈"),
        "the sizing recommendation with its numbers: {msg}"
    );
    let t = triage(&j, "alice.test", "errno 11");
    assert_eq!(t["explained_by"], "pool-exhausted", "{pretty}");
    assert!(t["statuses"]["502"].as_u64().unwrap() >= 1, "{pretty}");
    assert_eq!(j["primary_cause"]["check"], "pool-exhausted", "{pretty}");
    assert!(
        j["primary_cause"]["reason"]
            .as_str()
            .unwrap()
            .contains("confirmed by pool-exhausted"),
        "{pretty}"
    );
}

#[test]
fn killed_master_is_fpm_down() {
    let mut sc = start(|t| t.to_string());
    let d = &mut sc.d;
    assert_eq!(d.get(false, "alice.test", "/index.php").status, 200);
    d.stop_fpm("8.2", Stop::Kill);
    let r = d.get(false, "alice.test", "/index.php");
    assert_eq!(r.status, 502, "{r:?}\n{}", d.nginx_errors());
    assert!(
        d.nginx_errors().contains(&format!(
            "connect() to unix:{ALICE_SOCK} failed (111: Connection refused)"
        )),
        "{}",
        d.nginx_errors()
    );
    let pid_file = d.host("/usr/local/php82/var/run/php-fpm.pid");
    assert!(pid_file.exists(), "a killed master leaves its pid file");

    // Live view: the pid file names a process that no longer exists.
    let j = scan_live(d);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    let down = findings(&j, "fpm-down");
    assert_eq!(down.len(), 1, "{pretty}");
    let f = down[0];
    assert_eq!(f["severity"], "critical", "{pretty}");
    assert_eq!(f["file"], "/usr/local/php82/var/run/php-fpm.pid", "{pretty}");
    assert_eq!(f["socket_state"], "refused", "{pretty}");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("stale pid file"), "{pretty}");
    let affected: Vec<&str> = f["affected_domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        affected.contains(&"alice.test") && affected.contains(&"bob.test"),
        "{pretty}"
    );
    let t = triage(&j, "alice.test", "errno 111");
    assert_eq!(t["explained_by"], "fpm-down", "{pretty}");
    assert_eq!(j["primary_cause"]["check"], "fpm-down", "{pretty}");
    assert_eq!(j["verdict"], "critical", "{pretty}");

    // Offline view (--root, no /proc): the refused sockets alone say it.
    let j = scan_root(d);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    let down = findings(&j, "fpm-down");
    assert_eq!(down.len(), 1, "{pretty}");
    assert_eq!(down[0]["severity"], "critical", "{pretty}");
    assert_eq!(j["primary_cause"]["check"], "fpm-down", "{pretty}");
}

#[test]
fn socket_mode_0600_is_a_permission_502() {
    let sc = start(|t| t.replace("listen.mode = 660", "listen.mode = 0600"));
    let d = &sc.d;
    let r = d.get(false, "alice.test", "/index.php");
    assert_eq!(r.status, 502, "{r:?}\n{}", d.nginx_errors());
    assert!(
        d.nginx_errors().contains(&format!(
            "connect() to unix:{ALICE_SOCK} failed (13: Permission denied)"
        )),
        "{}",
        d.nginx_errors()
    );
    assert_eq!(
        d.get(false, "bob.test", "/index.php").status,
        200,
        "bob's socket is fine"
    );

    let j = scan_root(d);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    let sp = findings(&j, "socket-permission");
    assert_eq!(sp.len(), 1, "{pretty}");
    let f = sp[0];
    assert_eq!(f["severity"], "critical", "{pretty}");
    assert_eq!(f["socket"], ALICE_SOCK, "{pretty}");
    assert_eq!(f["user"], "alice", "{pretty}");
    assert_eq!(f["domain"], "alice.test", "{pretty}");
    assert_eq!(f["file"], ALICE_POOL, "{pretty}");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("mode 0600") && msg.contains("alice:"), "{pretty}");
    assert!(msg.contains("cannot write"), "names what blocks: {msg}");
    let drift = findings(&j, "socket-drift");
    assert!(
        drift
            .iter()
            .any(|f| f["domain"] == "alice.test" && f["socket_state"] == "permission_denied"),
        "{pretty}"
    );
    let t = triage(&j, "alice.test", "errno 13");
    assert_eq!(t["explained_by"], "socket-permission", "{pretty}");
    assert_eq!(j["primary_cause"]["check"], "socket-permission", "{pretty}");
    assert!(findings(&j, "fpm-down").is_empty(), "{pretty}");
}
