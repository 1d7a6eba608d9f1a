//! Socket drift reproduced with real software: real nginx and real php-fpm
//! serve a simulated DirectAdmin tree (see `support` for the mount
//! namespace). First a real 200, then, after CustomBuild's PHP upgrade is
//! emulated, a real 502 for the domain whose `.cust_nginx` hard-codes the
//! old socket, then the scanner's verdict on exactly that state.

mod support;

use fpm_doctor::sim::{self, NginxRuntime, SimServer};
use serde_json::Value;
use support::{free_port, self_signed_cert, Daemons, Stop};

const ALICE_CUST: &str = "/usr/local/directadmin/data/users/alice/domains/alice.test.cust_nginx";
const DEAD_SOCKET: &str = "/usr/local/php82/sockets/alice.sock";

/// Field order matters: the daemons are stopped before the tree is deleted.
struct Scenario {
    d: Daemons,
    _tmp: tempfile::TempDir,
}

/// Write the drift demo with a runnable nginx config (free ports, a
/// self-signed cert), start php82 + nginx.
fn start_demo() -> Scenario {
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
    let mut d = Daemons::start(tmp.path());
    d.start_fpm("8.2");
    d.start_nginx();
    Scenario { d, _tmp: tmp }
}

fn assert_php_ok(d: &Daemons, https: bool, host: &str) {
    let r = d.get(https, host, "/index.php");
    assert_eq!(
        r.status,
        200,
        "{host} (https={https}) should answer 200: {r:?}\n{}{}",
        d.nginx_errors(),
        d.daemon_logs()
    );
    assert_eq!(
        r.body.trim(),
        format!("sim-php-ok {host} fpm-fcgi"),
        "PHP must have run"
    );
}

/// Steps 1–2: 200 on PHP 8.2; then the emulated upgrade to 8.3 (options.conf,
/// rewrite, new master up, old master stopped `how`, nginx reloaded) and a
/// real 502 for alice.test only. Returns the running scenario.
fn reach_drift(how: Stop) -> Scenario {
    let mut sc = start_demo();
    let d = &mut sc.d;
    assert_php_ok(d, false, "alice.test");
    assert_php_ok(d, false, "bob.test");
    assert_php_ok(d, true, "bob.test");

    let cust_before = std::fs::read(d.host(ALICE_CUST)).unwrap();
    sim::upgrade_php(d.root(), 1, "8.3").unwrap();
    assert_eq!(
        std::fs::read(d.host(ALICE_CUST)).unwrap(),
        cust_before,
        "upgrade must not touch .cust_nginx"
    );
    d.start_fpm("8.3");
    d.stop_fpm("8.2", how);
    let stale = d.host(DEAD_SOCKET).exists();
    match how {
        Stop::Graceful => assert!(!stale, "a clean stop removes the socket file"),
        Stop::Kill => assert!(stale, "a killed master leaves its socket file"),
    }
    d.reload_nginx();

    assert_php_ok(d, false, "bob.test");
    assert_php_ok(d, true, "bob.test");
    let r = d.get(false, "alice.test", "/index.php");
    assert_eq!(
        r.status,
        502,
        "alice.test must fail after the upgrade: {r:?}\n{}",
        d.nginx_errors()
    );
    let errno = match how {
        Stop::Graceful => "(2: No such file or directory)",
        Stop::Kill => "(111: Connection refused)",
    };
    let want = format!("connect() to unix:{DEAD_SOCKET} failed {errno}");
    let log =
        std::fs::read_to_string(d.host("/var/log/nginx/domains/alice.test.error.log")).unwrap_or_default();
    assert!(
        log.contains(&want),
        "alice.test.error.log lacks {want:?}:\n{}",
        d.nginx_errors()
    );
    sc
}

#[test]
fn real_200_then_real_502_after_upgrade_socket_missing() {
    reach_drift(Stop::Graceful);
}

#[test]
fn real_502_connection_refused_when_old_master_killed() {
    reach_drift(Stop::Kill);
}

/// Run `fpm-doctor scan --root T --json`: (exit code, JSON).
fn scan(d: &Daemons) -> (i32, Value) {
    support::fpm_doctor_json(&["scan"], d.root())
}

/// The JSON contract for the drift state; `state` is the dead socket's.
fn assert_drift_report(d: &Daemons, state: &str) {
    let (code, j) = scan(d);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert_eq!(j["schema"], 1, "{pretty}");
    assert_eq!(j["verdict"], "critical", "{pretty}");
    assert_eq!(code, 2, "exit code for critical\n{pretty}");

    let drift: Vec<&Value> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "socket-drift")
        .collect();
    assert_eq!(drift.len(), 1, "exactly one socket-drift finding\n{pretty}");
    let f = drift[0];
    let cust = std::fs::read_to_string(d.host(ALICE_CUST)).unwrap();
    let line = cust.lines().position(|l| l.contains(DEAD_SOCKET)).unwrap() + 1;
    assert_eq!(f["user"], "alice", "{pretty}");
    assert_eq!(f["domain"], "alice.test", "{pretty}");
    assert_eq!(f["file"], ALICE_CUST, "{pretty}");
    assert_eq!(f["line"], line, "{pretty}");
    assert!(
        f["text"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("fastcgi_pass unix:{DEAD_SOCKET};")),
        "{pretty}"
    );
    assert_eq!(f["layer"], "custom", "{pretty}");
    assert_eq!(f["socket"], DEAD_SOCKET, "{pretty}");
    assert_eq!(f["socket_state"], state, "{pretty}");
    assert_eq!(
        f["expected_socket"], "/usr/local/php83/sockets/alice.sock",
        "{pretty}"
    );
    assert_eq!(f["severity"], "critical", "{pretty}");
    assert!(
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["user"] != "bob"),
        "no finding for bob\n{pretty}"
    );

    let dom = |name: &str| {
        j["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["domain"] == name)
            .unwrap_or_else(|| panic!("{name} missing from domains[]\n{pretty}"))
            .clone()
    };
    let bob = dom("bob.test");
    assert_eq!(bob["status"], "ok", "{pretty}");
    assert_eq!(bob["user"], "bob", "{pretty}");
    let alice = dom("alice.test");
    assert_eq!(alice["status"], "drift", "{pretty}");
    assert_eq!(alice["php_slot"], 1, "{pretty}");
    assert_eq!(alice["php_release"], "8.3", "{pretty}");
    assert_eq!(
        alice["expected_socket"], "/usr/local/php83/sockets/alice.sock",
        "{pretty}"
    );
    let php = &j["php"][0];
    assert_eq!(php["slot"], 1, "{pretty}");
    assert_eq!(php["release"], "8.3", "{pretty}");
    assert_eq!(php["prefix"], "/usr/local/php83", "{pretty}");

    // The real nginx logs: the 502 is triaged, labelled from the access log,
    // linked to socket-drift, and named the primary cause.
    let triage = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "log-triage" && f["domain"] == "alice.test")
        .unwrap_or_else(|| panic!("no log-triage group for alice.test\n{pretty}"));
    assert_eq!(
        triage["statuses"]["502"], 1,
        "one real 502 in the access log\n{pretty}"
    );
    assert_eq!(triage["explained_by"], "socket-drift", "{pretty}");
    assert!(
        triage["log_line"].as_str().unwrap().contains(DEAD_SOCKET),
        "{pretty}"
    );
    assert_eq!(j["primary_cause"]["check"], "socket-drift", "{pretty}");
    assert_eq!(j["primary_cause"]["domain"], "alice.test", "{pretty}");
    let states = j["checks"].as_array().unwrap();
    assert!(
        states
            .iter()
            .any(|c| c["id"] == "log-triage" && c["state"] == "finding"),
        "{pretty}"
    );
}

/// Step 3 (awaits the scan command): the scanner names the `.cust_nginx`
/// line behind the real 502.
#[test]
fn scan_reports_drift_with_missing_socket() {
    let sc = reach_drift(Stop::Graceful);
    assert_drift_report(&sc.d, "missing");
}

/// Step 4 (awaits the scan command): stale socket file, nothing listening.
#[test]
fn scan_reports_drift_with_refused_socket() {
    let sc = reach_drift(Stop::Kill);
    assert_drift_report(&sc.d, "refused");
}

/// The generated configuration is valid for the real nginx, in pure nginx
/// and nginx_apache modes, with subdomains, aliases, SSL, a second PHP slot
/// and custom fragments.
#[test]
fn generated_config_passes_nginx_t() {
    support::require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_cert(&tmp.path().join(".test-cert"));
    let mut s = SimServer::drift_demo();
    s.php.push(("8.1".into(), "php-fpm".into()));
    s.runtime = Some(NginxRuntime {
        http_port: free_port(),
        https_port: free_port(),
        ssl_cert: Some(cert),
        ssl_key: Some(key),
        ..NginxRuntime::default()
    });
    let bob = &mut s.users[2].domains[0];
    bob.subdomains = vec!["shop".into(), "blog".into()];
    bob.aliases = vec!["bob-alias.test".into()];
    bob.cust_nginx = Some("client_max_body_size 128m;\n".into());
    bob.cust_nginx_https = Some("add_header Strict-Transport-Security \"max-age=300\";\n".into());
    let mut legacy = sim::SimDomain::new("legacy.test");
    legacy.php1_select = Some(2);
    legacy.ssl = true;
    legacy.nginx_only = true;
    s.users[2].domains.push(legacy);
    sim::write_tree(tmp.path(), &s).unwrap();

    let d = Daemons::start(tmp.path());
    let (ok, out) = d.nginx_test();
    assert!(ok, "nginx -t (nginx mode) failed:\n{out}");

    let opts = d.host("/usr/local/directadmin/custombuild/options.conf");
    let text = std::fs::read_to_string(&opts)
        .unwrap()
        .replace("webserver=nginx\n", "webserver=nginx_apache\n");
    std::fs::write(&opts, text).unwrap();
    sim::rewrite(d.root()).unwrap();
    assert!(
        std::fs::read_to_string(d.host("/usr/local/directadmin/data/users/bob/nginx.conf"))
            .unwrap()
            .contains("proxy_pass http://")
    );
    let (ok, out) = d.nginx_test();
    assert!(ok, "nginx -t (nginx_apache mode) failed:\n{out}");
}
