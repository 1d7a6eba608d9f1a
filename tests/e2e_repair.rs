//! Repairs proven with real software: real nginx and real php-fpm serve a
//! simulated DirectAdmin tree (see `support` for the mount namespace), the
//! CustomBuild upgrade 8.2 → 8.3 gives a real 502, the real `fpm-doctor`
//! binary repairs it through the apply protocol, whose configured commands
//! drive the real daemons (DA rewrite emulator, `nginx -t`, `nginx -s
//! reload` inside the namespace), and then:
//!
//! - nginx really answers 200,
//! - still 200 after another full DA rewrite (the fix is in a layer that
//!   survives it),
//! - only the bytes of the socket path changed.
//!
//! Also: rollback when `nginx -t` fails, undo back to the exact old bytes
//! (and the real 502), dry-run and unconfirmed runs write nothing.

mod support;

use fpm_doctor::sim::{self, NginxRuntime, SimDomain, SimServer, SimUser};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, self_signed_cert, Daemons, Stop};

const BIN: &str = env!("CARGO_BIN_EXE_fpm-doctor");
const USERS: &str = "/usr/local/directadmin/data/users";
const ALICE_CUST: &str = "/usr/local/directadmin/data/users/alice/domains/alice.test.cust_nginx";

fn cust_path(user: &str, domain: &str, ext: &str) -> String {
    format!("{USERS}/{user}/domains/{domain}.{ext}")
}

/// A `.cust_nginx` PHP location passing to `socket` (may hold DA tokens).
fn php_location(comment: &str, socket: &str) -> String {
    format!(
        "# {comment}\nlocation ~ \\.php$ {{\n\tfastcgi_pass unix:{socket};\n\tinclude /etc/nginx/fastcgi_params;\n\tfastcgi_read_timeout 300;\n}}\n"
    )
}

/// Field order matters: the daemons are stopped before the tree is deleted.
struct Rig {
    d: Daemons,
    /// The `--config` file: commands that drive the daemons in the namespace.
    conf: PathBuf,
    _tmp: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "expected JSON on stdout ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

fn q(s: &str) -> String {
    shell_words::quote(s).into_owned()
}

/// The `[commands]` of a repair that drives the real daemons: DA's rewrite
/// is the emulator for one user (`{user}`), validate and reload are the real
/// nginx inside the namespace.
fn commands_toml(d: &Daemons, rewrite: &str) -> String {
    let ns = d.nsenter_prefix();
    format!(
        "[commands]\nrewrite = {rewrite:?}\nnginx_test = {:?}\nnginx_reload = {:?}\ntimeout_secs = 30\n",
        format!("{ns} /usr/sbin/nginx -t -e /var/log/nginx/error.log"),
        format!("{ns} /usr/sbin/nginx -e /var/log/nginx/error.log -s reload"),
    )
}

impl Rig {
    /// Write `s` (with a runnable nginx: free ports, a self-signed cert),
    /// let `prep` edit the tree like an admin would, rewrite, start a
    /// php-fpm master per configured release and nginx.
    fn start(mut s: SimServer, prep: impl FnOnce(&Path)) -> Rig {
        support::require_tools();
        let tmp = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_cert(&tmp.path().join(".test-cert"));
        s.runtime = Some(NginxRuntime {
            http_port: free_port(),
            https_port: free_port(),
            ssl_cert: Some(cert),
            ssl_key: Some(key),
            ..NginxRuntime::default()
        });
        let tree = tmp.path().join("T");
        sim::write_tree(&tree, &s).unwrap();
        prep(&tree);
        sim::rewrite(&tree).unwrap();
        let mut d = Daemons::start(&tree);
        let mut releases: Vec<&str> = Vec::new();
        for (rel, mode) in &s.php {
            if rel != "no" && mode == "php-fpm" && !releases.contains(&rel.as_str()) {
                releases.push(rel);
            }
        }
        for rel in releases {
            d.start_fpm(rel);
        }
        d.start_nginx();
        let conf = tmp.path().join("fpm-doctor.toml");
        let rewrite = format!(
            "{BIN} sim-rewrite {} --user {{user}}",
            q(&d.root().to_string_lossy())
        );
        fs::write(&conf, commands_toml(&d, &rewrite)).unwrap();
        Rig { d, conf, _tmp: tmp }
    }

    fn host(&self, server_path: &str) -> PathBuf {
        self.d.host(server_path)
    }

    fn read(&self, server_path: &str) -> Vec<u8> {
        fs::read(self.host(server_path)).unwrap_or_else(|e| panic!("{server_path}: {e}"))
    }

    fn text(&self, server_path: &str) -> String {
        String::from_utf8(self.read(server_path)).unwrap()
    }

    /// CustomBuild's `php<slot>_release` change plus what the admin's
    /// service manager does: new masters up, old ones stopped, nginx reloaded.
    fn upgrade(&mut self, changes: &[(u8, &str)], start: &[&str], stop: &[&str]) {
        for (slot, rel) in changes {
            sim::upgrade_php(self.d.root(), *slot, rel).unwrap();
        }
        for r in start {
            self.d.start_fpm(r);
        }
        for r in stop {
            self.d.stop_fpm(r, Stop::Graceful);
        }
        self.d.reload_nginx();
    }

    /// A DA rebuild (`da build rewrite_confs`: every user and the
    /// server-wide files, overlays copied last), then nginx reloaded.
    fn rebuild(&mut self) {
        let out = Command::new(BIN)
            .arg("sim-rewrite")
            .arg(self.d.root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sim-rewrite: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (ok, why) = self.d.nginx_test();
        assert!(ok, "nginx -t after the rebuild:\n{why}");
        self.d.reload_nginx();
    }

    /// The real binary with `--root T --config C` appended; stdin is
    /// /dev/null; a run longer than 60 s is a hang and fails the test.
    fn fpm(&self, args: &[&str]) -> Run {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--root")
            .arg(self.d.root())
            .arg("--config")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "fpm-doctor {args:?} hung (killed after 60 s); stdout:\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `fpm-doctor <args> --json` for a command that reloads nginx on
    /// success; waits for that reload to take effect. Asserts outcome ok.
    fn apply_ok(&mut self, args: &[&str]) -> Value {
        let old = self.d.nginx_workers();
        let r = self.fpm(args);
        let j = r.json();
        let pretty = serde_json::to_string_pretty(&j).unwrap();
        assert_eq!(
            j["outcome"],
            "ok",
            "fpm-doctor {args:?}:\n{pretty}\nstderr:\n{}\n{}",
            r.stderr,
            self.d.nginx_errors()
        );
        assert_eq!(r.code, 0, "{pretty}");
        assert!(
            j["repair_id"].as_str().is_some_and(|s| !s.is_empty()),
            "a repair id\n{pretty}"
        );
        let reloaded = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "reload" && s["ok"] == true && s["skipped"] != true);
        assert!(reloaded, "the repair reloaded nginx\n{pretty}");
        self.d.wait_nginx_reloaded(&old);
        j
    }

    fn repair_ok(&mut self, scope: &[&str]) -> Value {
        let mut args = vec!["repair"];
        args.extend_from_slice(scope);
        args.extend_from_slice(&["--yes", "--json"]);
        self.apply_ok(&args)
    }

    /// A real 200 where PHP ran for `host`.
    fn assert_php(&self, https: bool, host: &str, path: &str) {
        let r = self.d.get(https, host, path);
        assert_eq!(
            r.status,
            200,
            "{host}{path} (https={https}) should answer 200: {r:?}\n{}{}",
            self.d.nginx_errors(),
            self.d.daemon_logs()
        );
        assert!(r.body.contains("sim-php-ok"), "PHP must have run: {r:?}");
    }

    fn assert_status(&self, https: bool, host: &str, path: &str, want: u16) {
        let r = self.d.get(https, host, path);
        assert_eq!(
            r.status,
            want,
            "{host}{path} (https={https}): {r:?}\n{}",
            self.d.nginx_errors()
        );
    }

    /// `scan --json`: no socket-drift finding at warning or worse.
    fn assert_scan_clean(&self) {
        let r = self.fpm(&["scan", "--json"]);
        let j = r.json();
        let pretty = serde_json::to_string_pretty(&j).unwrap();
        let bad: Vec<&Value> = j["findings"]
            .as_array()
            .unwrap()
            .iter()
            // Secondary sources (no kernel journal here) may be unknown: they
            // never decide the verdict.
            .filter(|f| f["severity"] != "info" && f["secondary"] != true)
            .collect();
        assert!(bad.is_empty(), "scan after repair + rebuild is clean\n{pretty}");
        assert_eq!(j["verdict"], "ok", "{pretty}");
    }

    /// Every file of the tree except logs, pid files and the namespace's
    /// staging: (server path → sha256). The repair journal is included.
    fn snapshot(&self) -> BTreeMap<String, String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            let mut es: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
            es.sort_by_key(|e| e.file_name());
            for e in es {
                let p = e.path();
                let rel = format!("/{}", p.strip_prefix(base).unwrap().to_string_lossy());
                if ["/.ns", "/var/log", "/run"].contains(&rel.as_str()) || rel.ends_with(".sock") {
                    continue;
                }
                let ft = e.file_type().unwrap();
                if ft.is_dir() {
                    walk(base, &p, out);
                } else if ft.is_file() {
                    let b = fs::read(&p).unwrap();
                    out.insert(rel, fpm_doctor::apply::fsx::sha256_hex(&b));
                } else if ft.is_symlink() {
                    out.insert(rel, format!("-> {}", fs::read_link(&p).unwrap().display()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.d.root(), self.d.root(), &mut out);
        out
    }
}

/// The plans of a repair JSON that were applied, with their edits.
fn edits(j: &Value) -> Vec<Value> {
    j["plans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["plan"]["edits"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// `after` is `before` with exactly the planned spans replaced: the bytes
/// outside every span are identical.
fn assert_only_spans_changed(before: &[u8], after: &[u8], file: &str, all: &[Value]) {
    let mut es: Vec<&Value> = all.iter().filter(|e| e["file"] == file).collect();
    assert!(!es.is_empty(), "no edit for {file}");
    es.sort_by_key(|e| e["start"].as_u64().unwrap());
    let (mut pos_b, mut pos_a) = (0usize, 0usize);
    for e in es {
        let (s, end) = (
            e["start"].as_u64().unwrap() as usize,
            e["end"].as_u64().unwrap() as usize,
        );
        let old = e["old"].as_str().unwrap().as_bytes();
        let new = e["new"].as_str().unwrap().as_bytes();
        assert_eq!(&before[s..end], old, "{file}: the span held the old text");
        let gap = s - pos_b;
        assert_eq!(
            &before[pos_b..s],
            &after[pos_a..pos_a + gap],
            "{file}: bytes before the span changed"
        );
        pos_a += gap;
        assert_eq!(
            &after[pos_a..pos_a + new.len()],
            new,
            "{file}: the span holds the new text"
        );
        pos_a += new.len();
        pos_b = end;
    }
    assert_eq!(
        &before[pos_b..],
        &after[pos_a..],
        "{file}: bytes after the span changed"
    );
}

fn file_states(j: &Value) -> BTreeMap<String, String> {
    j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// alice.test: the demo `.cust_nginx` with the literal php82 path; carol.test:
/// the same with DA's `|USER|` token; bob.test: plain, SSL.
fn cust_nginx_server() -> SimServer {
    let mut s = SimServer::drift_demo();
    let mut carol = SimDomain::new("carol.test");
    carol.cust_nginx = Some(php_location(
        "carol pins PHP 8.2 with DA's token",
        "/usr/local/php82/sockets/|USER|.sock",
    ));
    s.users.push(SimUser::new("carol", "admin", 5003, vec![carol]));
    s
}

/// Scenarios 1 and 8: `.cust_nginx` (literal and token form) repaired, the
/// fix survives a rebuild; then undo gives back the exact bytes and the 502.
#[test]
fn cust_nginx_repair_survives_rebuild_and_undo_restores_the_502() {
    let mut rig = Rig::start(cust_nginx_server(), |_| {});
    for h in ["alice.test", "bob.test", "carol.test"] {
        rig.assert_php(false, h, "/index.php");
    }
    rig.upgrade(&[(1, "8.3")], &["8.3"], &["8.2"]);
    rig.assert_status(false, "alice.test", "/index.php", 502);
    rig.assert_status(false, "carol.test", "/index.php", 502);
    rig.assert_php(false, "bob.test", "/index.php");
    rig.assert_php(true, "bob.test", "/index.php");

    let carol_cust = cust_path("carol", "carol.test", "cust_nginx");
    let alice_orig = rig.read(ALICE_CUST);
    let carol_orig = rig.read(&carol_cust);

    // alice.test: literal path, a `safe` plan.
    let j = rig.repair_ok(&["--domain", "alice.test"]);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    let plans = j["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 1, "{pretty}");
    assert_eq!(plans[0]["plan"]["safety"], "safe", "{pretty}");
    assert_eq!(
        file_states(&j),
        BTreeMap::from([(ALICE_CUST.to_string(), "applied".to_string())]),
        "only the .cust_nginx is written\n{pretty}"
    );
    let alice_new = rig.read(ALICE_CUST);
    assert_only_spans_changed(&alice_orig, &alice_new, ALICE_CUST, &edits(&j));
    assert_eq!(
        String::from_utf8(alice_new.clone()).unwrap(),
        String::from_utf8(alice_orig.clone()).unwrap().replace(
            "/usr/local/php82/sockets/alice.sock",
            "/usr/local/php83/sockets/alice.sock"
        )
    );
    assert!(rig
        .text(&format!("{USERS}/alice/nginx.conf"))
        .contains("fastcgi_pass unix:/usr/local/php83/sockets/alice.sock;"));
    rig.assert_php(false, "alice.test", "/index.php");
    // The scope was alice.test: carol is still broken, bob untouched.
    rig.assert_status(false, "carol.test", "/index.php", 502);
    rig.assert_php(true, "bob.test", "/index.php");
    let alice_id = j["repair_id"].as_str().unwrap().to_string();

    // carol.test: token form kept, only the version changes.
    let j = rig.repair_ok(&["--domain", "carol.test"]);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert_eq!(j["plans"][0]["plan"]["safety"], "safe", "{pretty}");
    let carol_new = rig.read(&carol_cust);
    assert_only_spans_changed(&carol_orig, &carol_new, &carol_cust, &edits(&j));
    let carol_text = String::from_utf8(carol_new).unwrap();
    assert!(
        carol_text.contains("fastcgi_pass unix:/usr/local/php83/sockets/|USER|.sock;"),
        "token form kept:\n{carol_text}"
    );
    assert!(!carol_text.contains("carol.sock"), "{carol_text}");
    rig.assert_php(false, "carol.test", "/index.php");

    // A full DA rebuild keeps the fixes.
    rig.rebuild();
    for h in ["alice.test", "bob.test", "carol.test"] {
        rig.assert_php(false, h, "/index.php");
    }
    rig.assert_php(true, "bob.test", "/index.php");
    rig.assert_scan_clean();

    // Scenario 8: undo alice's repair.
    let j = rig.apply_ok(&["undo", &alice_id, "--json"]);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert_eq!(rig.read(ALICE_CUST), alice_orig, "exact old bytes\n{pretty}");
    assert!(
        j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "rewrite" && s["ok"] == true),
        "the undo ran DA's rewrite\n{pretty}"
    );
    assert!(
        rig.text(&format!("{USERS}/alice/nginx.conf"))
            .contains("fastcgi_pass unix:/usr/local/php82/sockets/alice.sock;"),
        "the generated vhost names the old socket again"
    );
    rig.assert_status(false, "alice.test", "/index.php", 502);
    rig.assert_php(false, "carol.test", "/index.php");
    let undo_id = j["repair_id"].as_str().unwrap().to_string();

    let h = rig.fpm(&["history", "--json"]).json();
    let pretty = serde_json::to_string_pretty(&h).unwrap();
    let entries = h.as_array().unwrap();
    let find = |id: &str| entries.iter().find(|e| e["id"] == id).cloned();
    let rep = find(&alice_id).unwrap_or_else(|| panic!("history lists the repair\n{pretty}"));
    assert_eq!(rep["kind"], "apply", "{pretty}");
    assert_eq!(rep["state"], "applied", "{pretty}");
    let und = find(&undo_id).unwrap_or_else(|| panic!("history lists the undo\n{pretty}"));
    assert_eq!(und["kind"], "undo", "{pretty}");
    assert_eq!(und["undoes"], alice_id.as_str(), "{pretty}");
    assert_eq!(und["state"], "applied", "{pretty}");
    assert_eq!(entries.len(), 3, "two repairs and one undo\n{pretty}");
}

/// Scenario 2: `.cust_nginx_https` only touches the HTTPS server block.
#[test]
fn cust_nginx_https_repair_fixes_https_only_block() {
    let mut s = SimServer::drift_demo();
    s.users[1].domains[0].cust_nginx = None; // alice stays plain
    s.users[2].domains[0].cust_nginx_https = Some(php_location(
        "HTTPS only: legacy PHP 8.2",
        "/usr/local/php82/sockets/bob.sock",
    ));
    let mut rig = Rig::start(s, |_| {});
    rig.assert_php(true, "bob.test", "/index.php");
    rig.upgrade(&[(1, "8.3")], &["8.3"], &["8.2"]);
    rig.assert_status(true, "bob.test", "/index.php", 502);
    rig.assert_php(false, "bob.test", "/index.php");

    let file = cust_path("bob", "bob.test", "cust_nginx_https");
    let before = rig.read(&file);
    let j = rig.repair_ok(&["--domain", "bob.test"]);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert_eq!(j["plans"][0]["plan"]["safety"], "safe", "{pretty}");
    assert_eq!(
        file_states(&j),
        BTreeMap::from([(file.clone(), "applied".to_string())]),
        "{pretty}"
    );
    assert_only_spans_changed(&before, &rig.read(&file), &file, &edits(&j));
    assert!(rig
        .text(&file)
        .contains("unix:/usr/local/php83/sockets/bob.sock;"));
    rig.assert_php(true, "bob.test", "/index.php");
    rig.assert_php(false, "bob.test", "/index.php");
    rig.rebuild();
    rig.assert_php(true, "bob.test", "/index.php");
    rig.assert_php(false, "bob.test", "/index.php");
    rig.assert_php(false, "alice.test", "/index.php");
    rig.assert_scan_clean();
}

/// Scenario 7: `nginx -t` fails during the repair because an unrelated
/// include is broken after planning (DA's rewrite leaves a bad line in
/// nginx-vhosts.conf) → rolled back: the repaired file and everything DA
/// generates from it byte-identical to before, nginx never reloaded onto
/// the broken config, still serving what it served.
#[test]
fn failed_nginx_test_rolls_back_and_nginx_keeps_serving() {
    let mut rig = Rig::start(SimServer::drift_demo(), |_| {});
    rig.upgrade(&[(1, "8.3")], &["8.3"], &["8.2"]);
    rig.assert_status(false, "alice.test", "/index.php", 502);
    rig.assert_php(false, "bob.test", "/index.php");

    let t = rig.d.root().to_string_lossy().into_owned();
    let script = format!(
        "{BIN} sim-rewrite \"$0\" --user \"$1\" || exit 1\n\
         if [ ! -e \"$0/.broke\" ]; then : > \"$0/.broke\"; \
         echo 'this_is_not_a_directive on;' >> \"$0/etc/nginx/nginx-vhosts.conf\"; fi"
    );
    let rewrite = format!("/bin/sh -c {} {} {{user}}", q(&script), q(&t));
    fs::write(&rig.conf, commands_toml(&rig.d, &rewrite)).unwrap();

    let before = rig.snapshot();
    let workers = rig.d.nginx_workers();
    let r = rig.fpm(&["repair", "--domain", "alice.test", "--yes", "--json"]);
    let j = r.json();
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert_eq!(j["outcome"], "rolled_back", "{pretty}\n{}", r.stderr);
    assert_eq!(r.code, 2, "{pretty}");
    let err = j["error"].as_str().unwrap_or("");
    assert!(err.contains("validate failed"), "{pretty}");
    assert!(
        err.contains("this_is_not_a_directive"),
        "nginx's own message is reported\n{pretty}"
    );
    assert_eq!(
        file_states(&j),
        BTreeMap::from([(ALICE_CUST.to_string(), "rolled_back".to_string())]),
        "{pretty}"
    );
    let steps = j["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["step"] == "restore" && s["ok"] == true),
        "{pretty}"
    );
    assert!(
        !steps
            .iter()
            .any(|s| s["step"] == "reload" && s["ok"] == true && s["skipped"] != true),
        "nginx is never reloaded onto a config that fails nginx -t\n{pretty}"
    );
    assert!(rig.host("/.broke").exists(), "the break really happened");
    assert_eq!(rig.d.nginx_workers(), workers, "no reload happened");

    // Byte-identical: the .cust_nginx and alice's generated files (DA's
    // rewrite ran again on the restored text). Changed: only the journal
    // and the unrelated include someone else broke.
    let after = rig.snapshot();
    let changed: std::collections::BTreeSet<&str> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(String::as_str)
        .filter(|k| !k.starts_with("/var/lib/fpm_doctor/") && *k != "/.broke")
        .collect();
    assert_eq!(
        changed,
        ["/etc/nginx/nginx-vhosts.conf"].into(),
        "changed by a rolled-back repair\n{pretty}"
    );
    assert_eq!(rig.read(ALICE_CUST), sim::DEMO_CUST_NGINX.as_bytes());
    rig.assert_status(false, "alice.test", "/index.php", 502);
    rig.assert_php(false, "bob.test", "/index.php");
    rig.assert_php(true, "bob.test", "/index.php");
    let h = rig.fpm(&["history", "--json"]).json();
    assert_eq!(h[0]["state"], "rolled_back", "{h}");
}

/// Scenario 9: `--dry-run` writes nothing and prints the diff; without
/// `--yes` and with stdin from /dev/null nothing is applied and nothing hangs.
#[test]
fn dry_run_and_unconfirmed_repair_write_nothing() {
    let mut rig = Rig::start(SimServer::drift_demo(), |_| {});
    rig.upgrade(&[(1, "8.3")], &["8.3"], &["8.2"]);
    let before = rig.snapshot();

    let r = rig.fpm(&["repair", "--domain", "alice.test", "--dry-run"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("--- {ALICE_CUST}")), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("-\tfastcgi_pass unix:/usr/local/php82/sockets/alice.sock;"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("+\tfastcgi_pass unix:/usr/local/php83/sockets/alice.sock;"),
        "{}",
        r.stdout
    );
    let j = rig
        .fpm(&["repair", "--domain", "alice.test", "--dry-run", "--json"])
        .json();
    assert_eq!(j["outcome"], "dry_run", "{j}");
    assert!(j["diff"].as_str().unwrap().contains("php83/sockets/alice.sock"));
    assert_eq!(rig.snapshot(), before, "a dry run writes nothing");

    let start = Instant::now();
    let r = rig.fpm(&["repair", "--domain", "alice.test"]);
    assert!(start.elapsed() < Duration::from_secs(30), "no hang");
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("not applied"), "{}", r.stdout);
    let j = rig.fpm(&["repair", "--domain", "alice.test", "--json"]).json();
    assert_eq!(j["outcome"], "not_confirmed", "{j}");
    assert_eq!(rig.snapshot(), before, "an unconfirmed repair writes nothing");
    rig.assert_status(false, "alice.test", "/index.php", 502);
    let h = rig.fpm(&["history", "--json"]).json();
    assert_eq!(h, serde_json::json!([]), "nothing journalled");
}

/// alice.test and bob.test (SSL), no `.cust_*`.
fn plain_server() -> SimServer {
    let mut s = SimServer::drift_demo();
    s.users[1].domains[0].cust_nginx = None;
    s
}

/// Scenario 3: a custom `nginx_php.conf` template hard-codes php82 for
/// every user. The repair swaps only the version (each user keeps `|USER|`)
/// and DA rewrites every user the template serves, not only the domain asked
/// about: both users' domains answer 200, also after a rebuild.
#[test]
fn custom_template_repair_fixes_every_user() {
    const TPL: &str = "/usr/local/directadmin/data/templates/custom/nginx_php.conf";
    let mut rig = Rig::start(plain_server(), |t| {
        let shipped = t.join("usr/local/directadmin/data/templates/nginx_php.conf");
        let text = fs::read_to_string(shipped)
            .unwrap()
            .replace("|PHP_FPM_SOCKET_PATH|", "/usr/local/php82/sockets/|USER|.sock");
        let custom = t.join(&TPL[1..]);
        fs::create_dir_all(custom.parent().unwrap()).unwrap();
        fs::write(custom, text).unwrap();
    });
    rig.assert_php(false, "alice.test", "/index.php");
    rig.assert_php(true, "bob.test", "/index.php");
    rig.upgrade(&[(1, "8.3")], &["8.3"], &["8.2"]);
    rig.assert_status(false, "alice.test", "/index.php", 502);
    rig.assert_status(false, "bob.test", "/index.php", 502);
    rig.assert_status(true, "bob.test", "/index.php", 502);

    let before = rig.read(TPL);
    let j = rig.repair_ok(&["--domain", "alice.test"]);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert_eq!(j["plans"].as_array().unwrap().len(), 1, "{pretty}");
    assert_eq!(j["plans"][0]["plan"]["safety"], "confirm", "{pretty}");
    assert_eq!(
        file_states(&j),
        BTreeMap::from([(TPL.to_string(), "applied".to_string())]),
        "{pretty}"
    );
    let after = rig.read(TPL);
    assert_only_spans_changed(&before, &after, TPL, &edits(&j));
    assert_eq!(
        String::from_utf8(after).unwrap(),
        String::from_utf8(before).unwrap().replace(
            "/usr/local/php82/sockets/|USER|.sock",
            "/usr/local/php83/sockets/|USER|.sock"
        ),
        "only the version part changed; |USER| kept"
    );
    rig.assert_php(false, "alice.test", "/index.php");
    rig.assert_php(false, "bob.test", "/index.php");
    rig.assert_php(true, "bob.test", "/index.php");
    rig.rebuild();
    rig.assert_php(false, "alice.test", "/index.php");
    rig.assert_php(true, "bob.test", "/index.php");
    rig.assert_scan_clean();
}

/// Scenario 4: a CustomBuild overlay `custom/nginx/conf/webapps.conf` keeps
/// the php82 `webapps.sock` on /phpMyAdmin (the webapps pool really serves
/// it). 502 there before, 200 after, and after the rebuild that copies the
/// overlay over /etc/nginx again.
#[test]
fn overlay_webapps_repair_survives_the_overlay_copy() {
    const OVERLAY: &str = "/usr/local/directadmin/custombuild/custom/nginx/conf/webapps.conf";
    let mut rig = Rig::start(plain_server(), |t| {
        // The admin customised webapps.conf the CustomBuild way: a copy in
        // the overlay (here unchanged, so it names the php82 socket).
        let live = fs::read_to_string(t.join("etc/nginx/webapps.conf")).unwrap();
        assert!(live.contains("unix:/usr/local/php82/sockets/webapps.sock;"));
        let o = t.join(&OVERLAY[1..]);
        fs::create_dir_all(o.parent().unwrap()).unwrap();
        fs::write(o, format!("# site-wide tweaks\n{live}")).unwrap();
        let pma = t.join("var/www/html/phpMyAdmin");
        fs::create_dir_all(&pma).unwrap();
        fs::write(pma.join("index.php"), sim::INDEX_PHP).unwrap();
    });
    let pma = "/phpMyAdmin/index.php";
    rig.assert_php(false, sim::HOSTNAME, pma);
    rig.assert_php(false, "alice.test", pma);
    rig.upgrade(&[(1, "8.3")], &["8.3"], &["8.2"]);
    assert!(rig
        .text("/etc/nginx/webapps.conf")
        .contains("unix:/usr/local/php82/sockets/webapps.sock;"));
    rig.assert_status(false, sim::HOSTNAME, pma, 502);
    rig.assert_status(false, "alice.test", pma, 502);
    rig.assert_php(false, "alice.test", "/index.php");

    let before = rig.read(OVERLAY);
    let live_before = rig.read("/etc/nginx/webapps.conf");
    let j = rig.repair_ok(&["--all"]);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert!(
        j["plans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["plan"]["safety"] == "confirm"),
        "{pretty}"
    );
    let states = file_states(&j);
    assert_eq!(
        states.get(OVERLAY).map(String::as_str),
        Some("applied"),
        "{pretty}"
    );
    assert_only_spans_changed(&before, &rig.read(OVERLAY), OVERLAY, &edits(&j));
    let overlay = rig.text(OVERLAY);
    assert_eq!(
        overlay.matches("php83/sockets/webapps.sock").count(),
        2,
        "{overlay}"
    );
    assert!(!overlay.contains("php82"), "{overlay}");
    if states.contains_key("/etc/nginx/webapps.conf") {
        assert_only_spans_changed(
            &live_before,
            &rig.read("/etc/nginx/webapps.conf"),
            "/etc/nginx/webapps.conf",
            &edits(&j),
        );
    }
    rig.assert_php(false, sim::HOSTNAME, pma);
    rig.assert_php(false, "alice.test", pma);
    rig.assert_php(true, "bob.test", pma);
    rig.rebuild();
    assert_eq!(
        rig.text("/etc/nginx/webapps.conf"),
        overlay,
        "the overlay was copied again"
    );
    rig.assert_php(false, sim::HOSTNAME, pma);
    rig.assert_php(false, "alice.test", pma);
    rig.assert_scan_clean();
}

/// Scenario 5: dave.test selects slot 2 (`php1_select=2`), whose release
/// becomes `no` in the upgrade. The sim's rewrite falls back to slot 1 (as
/// it is written to), so the real nginx keeps answering 200 through the 8.3
/// socket: no 502 here, but the panel data is wrong and the scan says so.
/// The repair moves the domain to a live slot (`confirm`: applied with
/// `--yes`, not with `--safe-only`).
#[test]
fn php1_select_on_a_disabled_slot_is_moved_to_a_live_slot() {
    let mut s = plain_server();
    s.php.push(("8.1".into(), "php-fpm".into()));
    let mut dave = SimDomain::new("dave.test");
    dave.php1_select = Some(2);
    s.users.push(SimUser::new("dave", "admin", 5004, vec![dave]));
    let mut rig = Rig::start(s, |_| {});
    rig.assert_php(false, "dave.test", "/index.php");
    assert!(rig
        .text(&format!("{USERS}/dave/nginx.conf"))
        .contains("unix:/usr/local/php81/sockets/dave.sock;"));

    rig.upgrade(&[(1, "8.3"), (2, "no")], &["8.3"], &["8.2", "8.1"]);
    // What really happens: the fallback serves dave.test from slot 1.
    rig.assert_php(false, "dave.test", "/index.php");
    let vhost = rig.text(&format!("{USERS}/dave/nginx.conf"));
    assert!(
        vhost.contains(&format!("include {USERS}/dave/nginx_php.conf;")) && !vhost.contains("php81"),
        "{vhost}"
    );
    assert!(rig
        .text(&format!("{USERS}/dave/nginx_php.conf"))
        .contains("unix:/usr/local/php83/sockets/dave.sock;"));
    let scan = rig.fpm(&["scan", "--domain", "dave.test", "--json"]).json();
    let pretty = serde_json::to_string_pretty(&scan).unwrap();
    let conf = format!("{USERS}/dave/domains/dave.test.conf");
    assert!(
        scan["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["layer"] == "panel" && f["file"] == conf.as_str() && f["severity"] == "critical"),
        "{pretty}"
    );

    let r = rig.fpm(&[
        "repair",
        "--domain",
        "dave.test",
        "--safe-only",
        "--yes",
        "--json",
    ]);
    assert_eq!(
        r.json()["outcome"],
        "nothing_to_do",
        "a confirm plan is not safe-only"
    );
    let before = rig.read(&conf);
    let j = rig.repair_ok(&["--domain", "dave.test"]);
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert_eq!(j["plans"][0]["plan"]["safety"], "confirm", "{pretty}");
    assert_eq!(
        file_states(&j),
        BTreeMap::from([(conf.clone(), "applied".to_string())]),
        "{pretty}"
    );
    assert_only_spans_changed(&before, &rig.read(&conf), &conf, &edits(&j));
    assert!(
        rig.text(&conf).contains("\nphp1_select=1\n"),
        "{}",
        rig.text(&conf)
    );
    rig.assert_php(false, "dave.test", "/index.php");
    rig.rebuild();
    rig.assert_php(false, "dave.test", "/index.php");
    rig.assert_php(false, "alice.test", "/index.php");
    rig.assert_scan_clean();
}

const APACHE: &str = "/usr/sbin/apache2";

/// The main Apache config DA's httpd.conf would be (host paths: /etc/httpd
/// is not mounted in the namespace). Workers run in the nginx group, which
/// owns the php-fpm sockets in nginx_apache mode.
fn apache_conf(t: &Path, port: u16) -> String {
    let m = |n: &str| format!("LoadModule {n}_module /usr/lib/apache2/modules/mod_{n}.so\n");
    let mut c = String::new();
    for n in [
        "mpm_event",
        "authz_core",
        "mime",
        "dir",
        "proxy",
        "proxy_fcgi",
        "suexec",
    ] {
        c.push_str(&m(n));
    }
    c.push_str(&format!(
        "ServerRoot /etc/apache2\nServerName {host}\nUser apache\nGroup nginx\n\
         PidFile /run/apache-sim.pid\nDefaultRuntimeDir /run\nListen 127.0.0.1:{port}\n\
         ErrorLog /var/log/httpd/error_log\nLogLevel warn\nTypesConfig /etc/mime.types\n\
         LogFormat \"%b\" bytes\nLogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" combined\n\
         DirectoryIndex index.php index.html\n<Directory />\n\tRequire all granted\n</Directory>\n\
         Include {vh}\n",
        host = sim::HOSTNAME,
        vh = t.join("etc/httpd/conf/extra/directadmin-vhosts.conf").display()
    ));
    c
}

/// Scenario 6: nginx_apache; nginx proxies to a real Apache 2.4
/// (mod_proxy_fcgi) whose `.cust_httpd` hard-codes the php82 socket. After
/// the upgrade Apache cannot reach PHP (Apache answers 503 for a dead
/// FastCGI backend, nginx passes it on); the repair edits `.cust_httpd`,
/// DA rewrites, `apache2 -t` and a graceful restart run in the namespace;
/// 200 after, and after a rebuild.
#[test]
fn cust_httpd_repair_with_real_apache_behind_nginx() {
    assert!(
        Path::new(APACHE).exists(),
        "needs Debian's apache2 (apt-get install apache2) for the nginx_apache scenario"
    );
    let mut s = SimServer::new("nginx_apache", "8.2");
    let mut admin = SimUser::new("admin", "admin", 5000, vec![]);
    admin.usertype = "admin".into();
    let mut erin = SimDomain::new("erin.test");
    erin.cust_httpd = Some(
        "# legacy app pinned to PHP 8.2\n<LocationMatch \"\\.php$\">\n\
         \tSetHandler \"proxy:unix:/usr/local/php82/sockets/erin.sock|fcgi://localhost\"\n</LocationMatch>\n"
            .into(),
    );
    let mut fred = SimDomain::new("fred.test");
    fred.ssl = false;
    s.users = vec![
        admin,
        SimUser::new("erin", "admin", 5001, vec![erin]),
        SimUser::new("fred", "admin", 5002, vec![fred]),
    ];
    let (p8080, p8081) = (free_port(), free_port());
    let mut rig = Rig::start(s, |t| {
        let dac = t.join("usr/local/directadmin/conf/directadmin.conf");
        let text = fs::read_to_string(&dac)
            .unwrap()
            .replace("port_8080=8080", &format!("port_8080={p8080}"))
            .replace("port_8081=8081", &format!("port_8081={p8081}"));
        fs::write(dac, text).unwrap();
    });
    let t = rig.d.root().to_path_buf();
    let conf = t.join(".ns/apache-sim.conf");
    fs::write(&conf, apache_conf(&t, p8080)).unwrap();
    let conf_s = conf.to_string_lossy().into_owned();
    rig.d
        .start_daemon("apache", APACHE, &["-f", &conf_s, "-DFOREGROUND"], &[p8080]);
    let ns = rig.d.nsenter_prefix();
    let rewrite = format!("{BIN} sim-rewrite {} --user {{user}}", q(&t.to_string_lossy()));
    let mut toml = commands_toml(&rig.d, &rewrite);
    toml.push_str(&format!(
        "apache_test = {:?}\napache_reload = {:?}\n",
        format!("{ns} {APACHE} -f {} -t", q(&conf_s)),
        format!("{ns} {APACHE} -f {} -k graceful", q(&conf_s)),
    ));
    fs::write(&rig.conf, toml).unwrap();
    let apache_log = |rig: &Rig| {
        format!(
            "{}\n{}",
            rig.d.daemon_out("apache"),
            fs::read_to_string(rig.host("/var/log/httpd/error_log")).unwrap_or_default()
        )
    };
    let r = rig.d.get(false, "erin.test", "/index.php");
    assert_eq!(r.status, 200, "{r:?}\n{}", apache_log(&rig));
    assert!(r.body.contains("sim-php-ok erin.test fpm-fcgi"), "{r:?}");
    rig.assert_php(false, "fred.test", "/index.php");

    rig.upgrade(&[(1, "8.3")], &["8.3"], &["8.2"]);
    // nginx's config is unchanged in substance; Apache needs its restart.
    let out = rig.d.run(APACHE, &["-f", &conf_s, "-k", "graceful"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wait_status = |rig: &Rig, host: &str, want: u16| {
        let start = Instant::now();
        loop {
            let r = rig.d.get(false, host, "/index.php");
            if r.status == want {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{host}: wanted {want}, got {r:?}\n{}",
                apache_log(rig)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_status(&rig, "fred.test", 200);
    wait_status(&rig, "erin.test", 503);
    let errs = fs::read_to_string(t.join("var/log/httpd/domains/erin.test.error.log")).unwrap_or_default()
        + &fs::read_to_string(t.join("var/log/httpd/error_log")).unwrap_or_default();
    assert!(
        errs.contains("/usr/local/php82/sockets/erin.sock"),
        "Apache names the dead socket:\n{errs}"
    );

    let file = cust_path("erin", "erin.test", "cust_httpd");
    let before = rig.read(&file);
    let r = rig.fpm(&["repair", "--domain", "erin.test", "--yes", "--json"]);
    let j = r.json();
    let pretty = serde_json::to_string_pretty(&j).unwrap();
    assert_eq!(j["outcome"], "ok", "{pretty}\n{}\n{}", r.stderr, apache_log(&rig));
    assert_eq!(j["plans"][0]["plan"]["safety"], "safe", "{pretty}");
    assert_eq!(j["plans"][0]["plan"]["target"], "apache", "{pretty}");
    assert_eq!(
        file_states(&j),
        BTreeMap::from([(file.clone(), "applied".to_string())]),
        "{pretty}"
    );
    let steps = j["steps"].as_array().unwrap();
    for step in ["rewrite", "validate", "reload", "verify"] {
        assert!(
            steps
                .iter()
                .any(|s| s["step"] == step && s["ok"] == true && s["skipped"] != true),
            "{step} ran\n{pretty}"
        );
    }
    assert_only_spans_changed(&before, &rig.read(&file), &file, &edits(&j));
    assert!(rig
        .text(&file)
        .contains("\"proxy:unix:/usr/local/php83/sockets/erin.sock|fcgi://localhost\""));
    // A graceful restart replaces Apache's children asynchronously.
    let r = wait_status(&rig, "erin.test", 200);
    assert!(r.body.contains("sim-php-ok erin.test fpm-fcgi"), "{r:?}");

    rig.rebuild();
    let out = rig.d.run(APACHE, &["-f", &conf_s, "-k", "graceful"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(200));
    wait_status(&rig, "erin.test", 200);
    wait_status(&rig, "fred.test", 200);
    rig.assert_scan_clean();
}
