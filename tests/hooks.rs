//! The automatic side: the CustomBuild hook sourced by a strict build shell,
//! `hook custombuild-post` (report / repair-safe / notify), the DA event hook
//! with its one drain worker, and the install/uninstall scripts. Everything
//! runs under temp dirs.

use fpm_doctor::sim::{self, SimDomain, SimServer, SimUser};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fpm-doctor");
const STATE: &str = "var/lib/fpm_doctor";
const QUEUE: &str = "usr/local/directadmin/data/task.queue";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cb_hook() -> PathBuf {
    repo().join("scripts/hooks/custombuild_post.sh")
}

fn da_hook() -> PathBuf {
    repo().join("hooks/user_httpd_write_post.sh")
}

/// Polls `cond` every 50 ms until it holds or `secs` pass.
fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// drift_demo after the 8.2 → 8.3 upgrade: alice's `.cust_nginx` still names
/// /usr/local/php82/sockets/alice.sock (the safe shape). With `confirm`,
/// bob's `.cust_nginx` names a php82 socket that is not his own pool (a
/// confirm-level fix).
fn upgraded_tree(root: &Path, confirm: bool, extra_users: &[&str]) {
    let mut s = SimServer::drift_demo();
    if confirm {
        let bob = s.users.iter_mut().find(|u| u.name == "bob").unwrap();
        bob.domains[0].cust_nginx = Some(
            "location ~ \\.php$ {\n\tfastcgi_pass unix:/usr/local/php82/sockets/legacy.sock;\n\tinclude /etc/nginx/fastcgi_params;\n}\n"
                .into(),
        );
    }
    for (i, u) in extra_users.iter().enumerate() {
        s.users.push(SimUser::new(
            u,
            "admin",
            6000 + i as u32,
            vec![SimDomain::new(&format!("{u}.test"))],
        ));
    }
    sim::write_tree(root, &s).unwrap();
    sim::upgrade_php(root, 1, "8.3").unwrap();
}

/// Stand-in PHP-FPM sockets (the demo's), for as long as the test process lives.
fn serve_sockets(root: &Path, users: &[&str]) {
    for u in users {
        fpm_doctor::demo::serve_standin(&root.join(format!("usr/local/php83/sockets/{u}.sock"))).unwrap();
    }
}

/// Every regular file under `dir` (sockets and folders skipped).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn queue_lines(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join(QUEUE))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// The CustomBuild hook, sourced like CustomBuild does, by a strict shell.

/// A strict build shell: snapshots its state, sources the hook, snapshots
/// again. Prints SURVIVED, then SAME or the diff. The ERR and EXIT traps
/// must not fire because of the hook.
const HARNESS: &str = r#"
set -euo pipefail
set -E
trap 'echo ERR-TRAP-FIRED' ERR
trap 'echo EXIT-TRAP' EXIT
cd /tmp
cb_snap() { set -o; shopt -p; trap -p; pwd; umask; compgen -v; compgen -A function; alias; }
before=; after=
before=$(cb_snap)
source "$HOOK"
echo "SURVIVED status=$?"
after=$(cb_snap)
if [ "$before" = "$after" ]; then echo SAME; else echo DIFFERENT; diff <(echo "$before") <(echo "$after") || :; fi
"#;

/// Sources the hook with these env vars; returns the output and how long
/// the build shell was held.
fn source_hook(env: &[(&str, &str)]) -> (Output, Duration) {
    let t = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(HARNESS)
        .env("HOOK", cb_hook())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        // output() waits for EOF: a detached child holding the build's
        // stdout/stderr would hold this call too.
        .output()
        .unwrap();
    (out, t.elapsed())
}

fn assert_survived(out: &Output, held: Duration) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build shell failed: {stdout}\n{stderr}");
    assert!(stdout.contains("SURVIVED status=0"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("\nSAME\n"),
        "the hook leaked into the build shell:\n{stdout}"
    );
    assert!(!stdout.contains("ERR-TRAP-FIRED"), "{stdout}");
    assert!(
        stderr.is_empty(),
        "the hook wrote to the build's stderr: {stderr}"
    );
    assert!(held < Duration::from_secs(5), "the build shell was held {held:?}");
}

#[test]
fn cb_hook_sourced_with_binary_missing_leaks_nothing() {
    let t = tempfile::tempdir().unwrap();
    let log = t.path().join("hook.log");
    let (out, held) = source_hook(&[
        ("FPM_DOCTOR_BIN", t.path().join("nope").to_str().unwrap()),
        ("FPM_DOCTOR_HOOK_LOG", log.to_str().unwrap()),
    ]);
    assert_survived(&out, held);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("missing or not executable"));
    // No log folder at all: still fine.
    let (out, held) = source_hook(&[
        ("FPM_DOCTOR_BIN", "/nonexistent/fpm-doctor"),
        (
            "FPM_DOCTOR_HOOK_LOG",
            t.path().join("no/such/dir/log").to_str().unwrap(),
        ),
    ]);
    assert_survived(&out, held);
}

#[test]
fn cb_hook_sourced_with_crashing_binary_leaks_nothing() {
    let t = tempfile::tempdir().unwrap();
    let fake = t.path().join("fpm-doctor");
    std::fs::write(&fake, "#!/bin/sh\nkill -SEGV $$\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = t.path().join("hook.log");
    let (out, held) = source_hook(&[
        ("FPM_DOCTOR_BIN", fake.to_str().unwrap()),
        ("FPM_DOCTOR_HOOK_LOG", log.to_str().unwrap()),
    ]);
    assert_survived(&out, held);
    assert!(
        wait_for(10, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("fpm-doctor exited 139")),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

fn alive(pid: i32) -> bool {
    // A zombie has finished; only its parent's wait is missing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn cb_hook_sourced_with_hanging_binary_releases_the_build_and_kills_the_hang() {
    let t = tempfile::tempdir().unwrap();
    let fake = t.path().join("fpm-doctor");
    let pidfile = t.path().join("pid");
    std::fs::write(
        &fake,
        format!("#!/bin/sh\necho $$ > {}\nexec sleep 1000\n", pidfile.display()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = t.path().join("hook.log");
    let (out, held) = source_hook(&[
        ("FPM_DOCTOR_BIN", fake.to_str().unwrap()),
        ("FPM_DOCTOR_HOOK_TIMEOUT", "2"),
        ("FPM_DOCTOR_HOOK_LOG", log.to_str().unwrap()),
    ]);
    assert_survived(&out, held);
    assert!(wait_for(10, || std::fs::read_to_string(&pidfile)
        .is_ok_and(|s| s.ends_with('\n'))));
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // timeout(1) TERMs it after 2 s (KILL 10 s later at worst).
    assert!(wait_for(20, || !alive(pid)), "the hung check {pid} still runs");
    assert!(wait_for(5, || std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("killed after 2 s")));
}

#[test]
fn cb_hook_sourced_with_real_binary_writes_the_summary() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    upgraded_tree(&root, false, &[]);
    let root_s = root.to_str().unwrap().to_string();
    let (out, held) = source_hook(&[
        ("FPM_DOCTOR_BIN", BIN),
        ("FPM_DOCTOR_ARGS", &format!("--root {root_s}")),
        ("FPM_DOCTOR_CONFIG", t.path().join("none.toml").to_str().unwrap()),
        ("FPM_DOCTOR_HOOK_LOG", t.path().join("hook.log").to_str().unwrap()),
    ]);
    assert_survived(&out, held);
    let summary = root.join(STATE).join("last-hook.json");
    assert!(
        wait_for(60, || summary.exists()),
        "no summary; log: {}",
        std::fs::read_to_string(t.path().join("hook.log")).unwrap_or_default()
    );
    let v = read_json(&summary);
    assert_eq!(v["hook"], "custombuild-post");
    assert_eq!(v["policy"], "report");
    assert_eq!(v["verdict"], "critical");
    let drifted: Vec<&str> = v["drifted_domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    assert!(drifted.contains(&"alice.test"), "{v:#}");
    let alice = v["drifted_domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == "alice.test")
        .unwrap();
    assert_eq!(alice["socket"], "/usr/local/php82/sockets/alice.sock");
    assert!(v["counts"]["domains"].as_u64().unwrap() >= 2);
}

// ---------------------------------------------------------------------------
// hook custombuild-post: policies and the admin message.

fn run_post(root: &Path, config: &str) -> Output {
    let cfg = root.parent().unwrap().join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    Command::new(BIN)
        .args(["hook", "custombuild-post", "--json", "--config"])
        .arg(&cfg)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap()
}

const ALICE_CUST: &str = "usr/local/directadmin/data/users/alice/domains/alice.test.cust_nginx";
const BOB_CUST: &str = "usr/local/directadmin/data/users/bob/domains/bob.test.cust_nginx";

fn assert_one_notify_line(root: &Path) -> String {
    let lines = queue_lines(root);
    let notes: Vec<&String> = lines.iter().filter(|l| l.starts_with("action=notify")).collect();
    assert_eq!(notes.len(), 1, "{lines:?}");
    let l = notes[0].clone();
    assert!(l.starts_with("action=notify&value=admin&subject="), "{l}");
    assert!(l.contains("&message="), "{l}");
    // Form-encoded: no raw space, newline or second action.
    assert!(!l.contains(' ') && l.matches("action=").count() == 1, "{l}");
    assert!(l.contains("alice.test"), "{l}");
    l
}

#[test]
fn post_hook_repair_safe_applies_only_the_safe_plan() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    upgraded_tree(&root, true, &[]);
    serve_sockets(&root, &["admin", "alice", "bob", "webapps"]);
    let bob_before = std::fs::read(root.join(BOB_CUST)).unwrap();
    // No host command may run under --root: DA's rewrite is the simulator's.
    let config = format!(
        "[hook]\non_upgrade = \"repair-safe\"\n[commands]\nrewrite = \"{BIN} sim-rewrite {}\"\nnginx_test = \"\"\nnginx_reload = \"\"\napache_test = \"\"\napache_reload = \"\"\nrun_dataskq = false\n",
        root.display()
    );
    let out = run_post(&root, &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = read_json(&root.join(STATE).join("last-hook.json"));
    assert_eq!(v["policy"], "repair-safe");
    assert_eq!(v["verdict"], "critical");
    assert_eq!(v["repaired"]["outcome"], "ok", "{v:#}");
    let alice = std::fs::read_to_string(root.join(ALICE_CUST)).unwrap();
    assert!(
        alice.contains("unix:/usr/local/php83/sockets/alice.sock;"),
        "{alice}"
    );
    assert!(!alice.contains("php82"), "{alice}");
    assert_eq!(
        std::fs::read(root.join(BOB_CUST)).unwrap(),
        bob_before,
        "a confirm plan was applied"
    );
    let left = v["not_applied"].as_array().unwrap();
    assert!(
        left.iter()
            .any(|p| p["safety"] == "confirm" && p["finding"].as_str().unwrap().contains("bob.test")),
        "{v:#}"
    );
    assert_ne!(v["verdict_after"], Value::Null);
    // The repair is journalled like any other (undoable).
    let hist = Command::new(BIN)
        .args(["history", "--json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let h: Value = serde_json::from_slice(&hist.stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 1);
    let l = assert_one_notify_line(&root);
    assert!(l.contains("repaired"), "{l}");
}

#[test]
fn post_hook_report_writes_nothing_but_the_summary_and_the_message() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    upgraded_tree(&root, true, &[]);
    serve_sockets(&root, &["admin", "alice", "bob", "webapps"]);
    let before = snapshot(&root);
    let out = run_post(&root, "[hook]\non_upgrade = \"report\"\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stdout["policy"], "report");
    let mut after = snapshot(&root);
    let summary = after.remove(&root.join(STATE).join("last-hook.json")).unwrap();
    after.remove(&root.join(QUEUE)).unwrap();
    assert_eq!(before, after, "report mode changed a file");
    let v: Value = serde_json::from_slice(&summary).unwrap();
    assert_eq!(v["repaired"], Value::Null);
    let left = v["not_applied"].as_array().unwrap();
    assert!(left.iter().any(|p| p["safety"] == "safe"), "{v:#}");
    assert!(left.iter().any(|p| p["safety"] == "confirm"), "{v:#}");
    assert!(v["notified"].as_bool().unwrap());
    assert_one_notify_line(&root);
    assert!(!root.join(STATE).join("journal").exists());
}

#[test]
fn post_hook_exits_zero_on_a_broken_tree_and_three_on_a_broken_config() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // No DA at all: the message cannot be queued; the hook still exits 0
    // and says why in the summary.
    let out = run_post(&root, "[hook]\nnotify = \"always\"\n");
    assert_eq!(out.status.code(), Some(0));
    let v = read_json(&root.join(STATE).join("last-hook.json"));
    assert!(!v["notified"].as_bool().unwrap());
    assert!(v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().starts_with("notify:")));
    // No options.conf, no users: nothing judged, the verdict says so.
    std::fs::create_dir_all(root.join("usr/local/directadmin/data")).unwrap();
    let out = run_post(&root, "");
    assert_eq!(out.status.code(), Some(0));
    let v = read_json(&root.join(STATE).join("last-hook.json"));
    assert_ne!(v["verdict"], "ok");
    assert!(v["notified"].as_bool().unwrap());
    assert_eq!(queue_lines(&root).len(), 1);
    let out = run_post(&root, "[hook]\non_upgrade = \"repair-everything\"\n");
    assert_eq!(out.status.code(), Some(3));
    let out = run_post(
        &root,
        "[hook]\nnotify_task = \"action=notify\\naction=restart\"\n",
    );
    assert_eq!(out.status.code(), Some(3));
}

// ---------------------------------------------------------------------------
// The DA event hook: queue + one drain worker.

fn run_da_hook(root: &Path, log: &Path, username: &str) -> Output {
    Command::new("sh")
        .arg(da_hook())
        .env("username", username)
        .env("FPM_DOCTOR_BIN", BIN)
        .env("FPM_DOCTOR_ARGS", format!("--root {}", root.display()))
        .env("FPM_DOCTOR_CONFIG", "/nonexistent/config.toml")
        .env("FPM_DOCTOR_HOOK_LOG", log)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn drain_lock_free(root: &Path) -> bool {
    let p = root.join(STATE).join("drain.lock");
    let Ok(f) = std::fs::File::open(&p) else {
        return true;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on our own descriptor, released when it is closed.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[test]
fn da_hook_50_concurrent_calls_one_worker_at_a_time_every_user_rechecked() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let users = ["admin", "alice", "bob", "carol", "dave"];
    upgraded_tree(&root, false, &["carol", "dave"]);
    let log = t.path().join("hook.log");
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let (root, log) = (root.clone(), log.clone());
            let u = users[i % users.len()];
            std::thread::spawn(move || {
                let t = Instant::now();
                let out = run_da_hook(&root, &log, u);
                (out, t.elapsed())
            })
        })
        .collect();
    for h in handles {
        let (out, took) = h.join().unwrap();
        assert!(out.status.success());
        assert!(took < Duration::from_secs(10), "the DA hook took {took:?}");
    }
    let state = root.join(STATE);
    let done = || {
        users
            .iter()
            .all(|u| state.join("recheck").join(format!("{u}.json")).exists())
            && std::fs::metadata(state.join("recheck.queue")).is_ok_and(|m| m.len() == 0)
            && drain_lock_free(&root)
    };
    assert!(
        wait_for(90, done),
        "queue not drained; log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // One worker at a time: start/end pairs never overlap.
    let dl = std::fs::read_to_string(state.join("drain.log")).unwrap();
    let mut open: Option<String> = None;
    let mut workers = 0;
    for l in dl.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        match f[0] {
            "start" => {
                assert!(open.is_none(), "two drain workers at once:\n{dl}");
                open = Some(f[1].to_string());
                workers += 1;
            }
            "end" => assert_eq!(open.take().as_deref(), Some(f[1]), "{dl}"),
            _ => panic!("{l}"),
        }
    }
    assert!(open.is_none() && workers >= 1, "{dl}");
    assert!(workers <= 50, "{dl}");
    let alice = read_json(&state.join("recheck/alice.json"));
    assert_eq!(alice["user"], "alice");
    assert_eq!(alice["verdict"], "critical");
    assert!(alice["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["socket"] == "/usr/local/php82/sockets/alice.sock"));
    let events = std::fs::read_to_string(state.join("events.log")).unwrap();
    let ev: Vec<Value> = events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        ev.iter()
            .any(|e| e["domain"] == "alice.test" && e["event"] == "drift"),
        "{events}"
    );
    assert!(!std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("invalid"));
}

#[test]
fn da_hook_rejects_invalid_user_names() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    upgraded_tree(&root, false, &[]);
    let log = t.path().join("hook.log");
    for bad in ["../x", "a&b", "alice\nbob", "-rf", "", "Alice", "a/b", ".."] {
        let out = run_da_hook(&root, &log, bad);
        assert!(out.status.success(), "the DA hook must exit 0 for {bad:?}");
    }
    let direct = Command::new(BIN)
        .args(["hook", "user-httpd-write", "--user=../x", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_ne!(direct.status.code(), Some(0));
    let state = root.join(STATE);
    let q = std::fs::read_to_string(state.join("recheck.queue")).unwrap_or_default();
    assert!(q.is_empty(), "queued: {q:?}");
    let rechecked: Vec<_> = std::fs::read_dir(state.join("recheck"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(rechecked.is_empty(), "{rechecked:?}");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("invalid user name"));
    // And a valid one still goes through.
    run_da_hook(&root, &log, "alice");
    assert!(wait_for(60, || state.join("recheck/alice.json").exists()));
}

// ---------------------------------------------------------------------------
// install.sh / update.sh / uninstall.sh

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn run_script(plugin: &Path, root: &Path, name: &str, args: &[&str]) -> Output {
    let out = Command::new("sh")
        .arg(plugin.join("scripts").join(name))
        .args(args)
        .env("INSTALL_ROOT", root)
        .env_remove("DA_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn install_update_uninstall_under_install_root() {
    let t = tempfile::tempdir().unwrap();
    // The plugin folder as DA unpacks the tarball.
    let plugin = t.path().join("plugin");
    std::fs::create_dir_all(plugin.join("bin")).unwrap();
    for d in ["scripts", "hooks"] {
        let st = Command::new("cp")
            .arg("-a")
            .arg(repo().join(d))
            .arg(&plugin)
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::copy(BIN, plugin.join("bin/fpm-doctor")).unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(&root).unwrap();

    let out = run_script(&plugin, &root, "install.sh", &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("wrote default config"), "{said}");
    let bin = root.join("usr/local/lib/fpm_doctor/bin/fpm-doctor");
    let conf = root.join("etc/fpm_doctor/config.toml");
    let state = root.join("var/lib/fpm_doctor");
    let hooks: Vec<PathBuf> = ["php", "update_versions"]
        .iter()
        .map(|c| {
            root.join(format!(
                "usr/local/directadmin/custombuild/custom/hooks/{c}/post/fpm_doctor.sh"
            ))
        })
        .collect();
    // setuid root, group fpm_doctor (created in the tree's own passwd/group), 4750.
    assert_eq!(mode(&bin), 0o4750);
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&bin).unwrap();
        assert_eq!(m.uid(), 0);
        let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(
            passwd
                .lines()
                .any(|l| l.starts_with("fpm_doctor:") && l.ends_with(":/usr/sbin/nologin")),
            "{passwd}"
        );
        let gid: u32 = group
            .lines()
            .find(|l| l.starts_with("fpm_doctor:"))
            .unwrap()
            .split(':')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(m.gid(), gid);
        assert_eq!(
            mode(bin.parent().unwrap()),
            0o750,
            "no one else may even reach it"
        );
    }
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(BIN).unwrap());
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&conf), 0o600);
    let cron = std::fs::read_to_string(root.join("etc/cron.d/fpm_doctor")).unwrap();
    assert!(
        cron.contains("root /usr/local/lib/fpm_doctor/bin/fpm-doctor web-snapshot"),
        "{cron}"
    );
    for h in &hooks {
        assert_eq!(std::fs::read(h).unwrap(), std::fs::read(cb_hook()).unwrap());
    }
    // The default config is valid and all defaults.
    let cfg = fpm_doctor::config::Config::load(Some(&conf), None).unwrap();
    assert_eq!(cfg.hook.on_upgrade, fpm_doctor::config::OnUpgrade::Report);
    assert_eq!(cfg.paths, fpm_doctor::config::Paths::default());
    let text = std::fs::read_to_string(&conf).unwrap();
    for section in ["[paths]", "[commands]", "[hook]", "on_upgrade"] {
        assert!(text.contains(section), "{section}");
    }

    // The admin's config survives a second install and an update.
    std::fs::write(&conf, "[hook]\non_upgrade = \"repair-safe\"\n").unwrap();
    let out = run_script(&plugin, &root, "install.sh", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept existing config"));
    run_script(&plugin, &root, "update.sh", &[]);
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "[hook]\non_upgrade = \"repair-safe\"\n"
    );
    std::fs::write(state.join("last-hook.json"), "{}").unwrap();

    run_script(&plugin, &root, "uninstall.sh", &[]);
    assert!(!bin.exists());
    for h in &hooks {
        assert!(!h.exists(), "{}", h.display());
    }
    assert!(conf.exists() && state.join("last-hook.json").exists());

    run_script(&plugin, &root, "install.sh", &[]);
    assert!(bin.exists() && hooks.iter().all(|h| h.exists()));
    run_script(&plugin, &root, "uninstall.sh", &["--purge"]);
    assert!(!bin.exists() && !conf.exists() && !state.exists());
    assert!(hooks.iter().all(|h| !h.exists()));
    // Nothing outside INSTALL_ROOT: only the folders we made remain under it.
    let left = snapshot(&root);
    assert!(left.is_empty(), "{left:?}");
}
