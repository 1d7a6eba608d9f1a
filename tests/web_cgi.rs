//! The CGI face as DirectAdmin runs it: the real binary (and the real
//! wrapper scripts) with DA-like environments against the demo tree, whose
//! live stand-in sockets this test process serves.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fpm-doctor");
const STATE: &str = "var/lib/fpm_doctor";
const ALICE_CUST: &str = "usr/local/directadmin/data/users/alice/domains/alice-shop.test.cust_nginx";
const BOB_CUST: &str = "usr/local/directadmin/data/users/bob/domains/bob-news.test.cust_nginx_https";

struct Rig {
    _t: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
}

/// The demo tree with live sockets and the demo's commands (DA's rewrite is
/// the simulator's emulator; nothing to validate or reload).
fn rig() -> Rig {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    fpm_doctor::demo::build(&root).unwrap();
    let conf = root.join("test.toml");
    std::fs::write(
        &conf,
        format!(
            "[commands]\nrewrite = \"{BIN} sim-rewrite {} --user {{user}}\"\nnginx_test = \"\"\nnginx_reload = \"\"\nrun_dataskq = false\n",
            root.display()
        ),
    )
    .unwrap();
    Rig { _t: t, root, conf }
}

impl Rig {
    fn cfg(&self) -> fpm_doctor::config::Config {
        fpm_doctor::config::Config::load(Some(&self.conf), Some(&self.root)).unwrap()
    }

    /// The admin pages read the snapshot: take it now.
    fn snapshot(&self) {
        fpm_doctor::web::snapshot::run(&self.cfg()).unwrap();
    }

    fn cgi(&self, level: &str, page: &str, env: &[(&str, &str)]) -> String {
        let mut c = Command::new(BIN);
        c.arg("cgi")
            .arg("--config")
            .arg(&self.conf)
            .arg("--root")
            .arg(&self.root)
            .args(["--level", level, "--page", page])
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    fn get(&self, level: &str, page: &str, user: &str, query: &str) -> String {
        self.cgi(
            level,
            page,
            &[
                ("REQUEST_METHOD", "GET"),
                ("QUERY_STRING", query),
                ("USERNAME", user),
                ("SESSION_ID", "sess-1"),
            ],
        )
    }

    fn post(&self, level: &str, page: &str, user: &str, body: &str, session: &str) -> String {
        self.cgi(
            level,
            page,
            &[
                ("REQUEST_METHOD", "POST"),
                ("QUERY_STRING", ""),
                ("POST", body),
                ("USERNAME", user),
                ("SESSION_ID", session),
            ],
        )
    }

    fn read(&self, p: &str) -> Vec<u8> {
        std::fs::read(self.root.join(p)).unwrap()
    }

    fn journal_len(&self) -> usize {
        std::fs::read_dir(self.root.join(STATE).join("journal"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

fn csrf_of(html: &str) -> String {
    let re = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#).unwrap();
    re.captures(html).expect("a csrf field")[1].to_string()
}

fn plans_of(html: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"name="plan" value="([0-9a-f]+)""#).unwrap();
    re.captures_iter(html).map(|c| c[1].to_string()).collect()
}

#[test]
fn admin_index_is_a_fragment_listing_drifted_domains() {
    let r = rig();
    r.snapshot();
    let out = r.get("admin", "index.html", "admin", "");
    assert!(!out.starts_with("HTTP/"), "a normal page prints no headers");
    assert!(!out.contains("<html"), "a fragment, not a document");
    assert!(out.contains("<div class=\"fpmd\">"));
    for d in ["alice-shop.test", "bob-news.test", "carol-legacy.test"] {
        assert!(out.contains(d), "{d} listed");
    }
    assert!(out.contains("alice-shop.test.cust_nginx:6"), "file:line evidence");
    assert!(out.contains("PHP 8.3 (slot 1): alive"));
    assert!(out.contains("Primary cause"));
    // Every check and its state, per server.
    for id in fpm_doctor::checks::check_ids() {
        assert!(
            out.contains(&format!("{id}: ")),
            "check {id} missing from the overview"
        );
    }
    csrf_of(&out);
}

#[test]
fn without_a_snapshot_a_detached_scan_starts_and_status_raw_reports_it() {
    let r = rig();
    let out = r.get("admin", "index.html", "admin", "");
    assert!(
        out.contains("http-equiv=\"refresh\""),
        "polls while the scan runs: {out}"
    );
    let t0 = Instant::now();
    loop {
        let raw = r.get("admin", "status.raw", "admin", "");
        let body = raw.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        if v["state"] == "done" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "scan never finished: {raw}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = r.get("admin", "index.html", "admin", "");
    assert!(out.contains("bob-news.test") && !out.contains("http-equiv=\"refresh\""));
}

#[test]
fn raw_endpoints_print_a_whole_http_response_with_json() {
    let r = rig();
    r.snapshot();
    let raw = r.get("admin", "status.raw", "admin", "");
    let (head, body) = raw.split_once("\r\n\r\n").expect("blank line after the headers");
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
    assert!(lines.any(|l| l == "Content-Type: application/json"));
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["state"], "done");

    let raw = r.get("user", "scan.raw", "alice", "");
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let users: Vec<&str> = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["user"].as_str().unwrap())
        .collect();
    assert!(
        !users.is_empty() && users.iter().all(|u| *u == "alice"),
        "{users:?}"
    );

    let raw = r.get("user", "scan.raw", "mallory", "");
    assert!(raw.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{raw}");
}

#[test]
fn entity_encoded_query_string_is_decoded() {
    let r = rig();
    let out = r.get("user", "domain.html", "alice", "domain=alice-shop.test&amp;x=1");
    assert!(out.contains("<h2>alice-shop.test</h2>"), "{out}");
    assert!(out.contains("Preview the repair"));
}

#[test]
fn a_get_carrying_a_repair_changes_nothing() {
    let r = rig();
    let preview = r.get("user", "repair.html", "alice", "domain=alice-shop.test");
    let (tok, plans) = (csrf_of(&preview), plans_of(&preview));
    assert_eq!(plans.len(), 1, "{preview}");
    assert!(preview.contains("php83/sockets/|USER|.sock"), "the diff is shown");
    let before = r.read(ALICE_CUST);
    let q = format!("domain=alice-shop.test&plan={}&csrf={tok}", plans[0]);
    let out = r.get("user", "repair.html", "alice", &q);
    assert!(out.contains("Apply the selected repairs"), "still a preview");
    assert_eq!(r.read(ALICE_CUST), before);
    assert_eq!(r.journal_len(), 0);
}

#[test]
fn a_post_without_or_with_a_wrong_token_is_refused_and_writes_nothing() {
    let r = rig();
    let preview = r.get("user", "repair.html", "alice", "domain=alice-shop.test");
    let (tok, plan) = (csrf_of(&preview), plans_of(&preview).remove(0));
    let before = r.read(ALICE_CUST);
    for body in [
        format!("domain=alice-shop.test&plan={plan}"),
        format!("domain=alice-shop.test&plan={plan}&csrf={}", "0".repeat(64)),
        format!("domain=alice-shop.test&plan={plan}&csrf=nothex"),
    ] {
        let out = r.post("user", "repair.html", "alice", &body, "sess-1");
        assert!(out.contains("security token"), "{body}: {out}");
    }
    // A real token of another session, and of the same session at another level.
    let body = format!("domain=alice-shop.test&plan={plan}&csrf={tok}");
    assert!(r
        .post("user", "repair.html", "alice", &body, "sess-2")
        .contains("security token"));
    assert!(r
        .post("reseller", "repair.html", "resel", &body, "sess-1")
        .contains("security token"));
    assert!(r
        .post("user", "repair.html", "alice", &body, "")
        .contains("security token"));
    assert_eq!(r.read(ALICE_CUST), before);
    assert_eq!(r.journal_len(), 0);
}

#[test]
fn another_users_domain_is_404_and_nothing_is_written() {
    let r = rig();
    // bob's own preview gives a real plan id for bob's domain.
    let bob = r.get("user", "repair.html", "bob", "domain=bob-news.test");
    let plan = plans_of(&bob).remove(0);
    let alice = r.get("user", "repair.html", "alice", "domain=alice-shop.test");
    let tok = csrf_of(&alice);
    let before = r.read(BOB_CUST);
    let out = r.post(
        "user",
        "repair.html",
        "alice",
        &format!("domain=bob-news.test&plan={plan}&csrf={tok}"),
        "sess-1",
    );
    assert!(out.contains("data-status=\"404\""), "{out}");
    assert!(!out.contains("bob.sock"), "nothing about bob leaks");
    assert_eq!(r.read(BOB_CUST), before);
    assert_eq!(r.journal_len(), 0);
    // Reading is 404 too, for users and for a reseller asking about the admin's users.
    assert!(r
        .get("user", "domain.html", "alice", "domain=bob-news.test")
        .contains("data-status=\"404\""));
    assert!(r
        .get("reseller", "domain.html", "resel", "domain=carol.test")
        .contains("data-status=\"404\""));
    assert!(r
        .get("user", "repair.html", "alice", "domain=nowhere.test")
        .contains("data-status=\"404\""));
}

#[test]
fn dot_dot_in_parameters_is_refused() {
    let r = rig();
    for q in [
        "domain=../../etc/passwd",
        "domain=..%2F..%2Fetc",
        "domain=alice-shop.test%2F..%2F",
    ] {
        let out = r.get("admin", "domain.html", "admin", q);
        assert!(out.contains("Not a domain name"), "{q}: {out}");
    }
    let tok = csrf_of(&r.get("admin", "repair.html", "admin", "domain=alice-shop.test"));
    let out = r.post(
        "admin",
        "history.html",
        "admin",
        &format!("id=../../etc&csrf={tok}"),
        "sess-1",
    );
    assert!(out.contains("Not a repair id"), "{out}");
}

#[test]
fn a_reseller_sees_only_their_own_users() {
    let r = rig();
    r.snapshot();
    let out = r.get("reseller", "index.html", "resel", "");
    assert!(
        out.contains("alice-shop.test") && out.contains("bob-news.test"),
        "{out}"
    );
    assert!(!out.contains("carol"), "carol is the admin's user");
    assert!(
        !out.contains("Server-wide problems"),
        "server-wide layers are admin only"
    );
    let raw = r.get("reseller", "scan.raw", "resel", "");
    assert!(!raw.contains("carol") && !raw.contains("dave") && raw.contains("alice"));
    // A user on the reseller page is a user.
    let out = r.get("reseller", "index.html", "alice", "");
    assert!(out.contains("Your sites") && !out.contains("bob-news.test"));
}

#[test]
fn script_in_a_log_line_or_file_name_comes_out_escaped() {
    let r = rig();
    let log = r.root.join("var/log/nginx/domains/alice-shop.test.error.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap().to_string();
    let evil = last.replace("GET /index.php", "GET /<script>alert(1)</script>");
    std::fs::write(&log, format!("{text}{evil}\n")).unwrap();
    let cust = r.root.join(ALICE_CUST);
    let c = std::fs::read_to_string(&cust).unwrap();
    std::fs::write(
        &cust,
        format!("include /etc/nginx/x<script>alert(2)</script>.conf;\n{c}"),
    )
    .unwrap();
    r.snapshot();
    let html = r.get("admin", "index.html", "admin", "");
    assert!(!html.contains("<script>alert"), "raw script in HTML");
    assert!(
        html.contains("&#60;script&#62;alert(1)") || html.contains("&lt;script&gt;alert(1)"),
        "the log line is shown, escaped"
    );
    let user = r.get("user", "domain.html", "alice", "domain=alice-shop.test");
    assert!(!user.contains("<script>alert"));
    let raw = r.get("admin", "scan.raw", "admin", "");
    assert!(!raw.contains("<script>"), "raw script in JSON");
    assert!(raw.contains("\\u003cscript\\u003ealert(1)"));
}

#[test]
fn a_confirmed_repair_applies_shows_healthy_and_undoes() {
    let r = rig();
    r.snapshot();
    let preview = r.get("user", "repair.html", "alice", "domain=alice-shop.test");
    let (tok, plans) = (csrf_of(&preview), plans_of(&preview));
    let body = format!("csrf={tok}&amp;domain=alice-shop.test&amp;plan={}", plans[0]);
    let out = r.post("user", "repair.html", "alice", &body, "sess-1");
    assert!(out.contains("id=\"fpmd-outcome\">done"), "{out}");
    let now = String::from_utf8(r.read(ALICE_CUST)).unwrap();
    assert!(now.contains("/usr/local/php83/sockets/|USER|.sock"), "{now}");
    assert!(r
        .get("user", "domain.html", "alice", "domain=alice-shop.test")
        .contains("id=\"fpmd-healthy\""));
    // The overview was refreshed for alice without a full scan.
    let admin = r.get("admin", "index.html", "admin", "");
    assert!(admin.contains("bob-news.test</a></td>\n<td>bob</td>"), "{admin}");
    assert!(
        !admin.contains("alice-shop.test</a></td>\n<td>alice</td>"),
        "{admin}"
    );
    // bob sees none of it; alice undoes it.
    assert!(!r.get("user", "history.html", "bob", "").contains("alice"));
    let hist = r.get("user", "history.html", "alice", "");
    let id = regex::Regex::new(r#"name="id" value="([^"]+)""#)
        .unwrap()
        .captures(&hist)
        .unwrap()[1]
        .to_string();
    let out = r.post(
        "user",
        "history.html",
        "alice",
        &format!("csrf={}&id={id}", csrf_of(&hist)),
        "sess-1",
    );
    assert!(out.contains("id=\"fpmd-outcome\">done"), "{out}");
    assert!(String::from_utf8(r.read(ALICE_CUST)).unwrap().contains("php82"));
}

#[test]
fn a_user_may_not_apply_server_wide_fixes() {
    let r = rig();
    // The admin's preview of everything includes the custom template (server-wide).
    let all = r.get("admin", "repair.html", "admin", "all=1");
    assert!(all.contains("nginx_server_sub.conf"), "{all}");
    let user = r.get("user", "repair.html", "alice", "all=1");
    assert!(
        !user.contains("nginx_server_sub.conf") && !user.contains("webapps"),
        "{user}"
    );
}

#[test]
fn the_wrapper_scripts_run_the_binary() {
    let r = rig();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for lvl in ["admin", "reseller", "user"] {
        for page in [
            "index.html",
            "domain.html",
            "repair.html",
            "history.html",
            "status.raw",
            "scan.raw",
        ] {
            let p = repo.join(lvl).join(page);
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o755,
                "{}",
                p.display()
            );
            let s = std::fs::read_to_string(&p).unwrap();
            assert!(s.starts_with("#!/bin/sh\n"));
            assert!(
                s.contains(&format!("\"$BIN\" cgi --level {lvl} --page {page}\n")),
                "{}",
                p.display()
            );
        }
    }
    // The wrapper runs whatever FPM_DOCTOR_BIN names; a shim adds this rig's
    // --config/--root after the subcommand.
    let shim = r.root.join("shim.sh");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nsub=$1; shift\nexec {BIN} \"$sub\" --config {} --root {} \"$@\"\n",
            r.conf.display(),
            r.root.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = repo.join("user/index.html");
    let out = Command::new("/bin/sh")
        .arg(&w)
        .env_clear()
        .env("FPM_DOCTOR_BIN", &shim)
        .env("REQUEST_METHOD", "GET")
        .env("USERNAME", "alice")
        .env("SESSION_ID", "s")
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.contains("alice-shop.test") && !out.contains("bob-news.test"),
        "{out}"
    );
}

#[test]
fn the_domain_page_shows_each_checks_state_for_that_domain() {
    let r = rig();
    let drifted = r.get("user", "domain.html", "alice", "domain=alice-shop.test");
    assert!(drifted.contains("socket-drift: finding"), "{drifted}");
    assert!(drifted.contains("log-triage: finding"), "{drifted}");
    assert!(drifted.contains("pool-exhausted: ok"), "{drifted}");
    let healthy = r.get("user", "domain.html", "alice", "domain=alice-static.test");
    assert!(healthy.contains("socket-drift: ok"), "{healthy}");
    assert!(healthy.contains("log-triage: ok"), "{healthy}");
}
