//! mysql-stall against a real MariaDB: a row lock held by an open
//! transaction, an UPDATE waiting for it; the scan names both threads and
//! the DA user, and the repair kills the blocker so the waiter proceeds.
//!
//! mariadbd runs as root without systemd on a unix socket and a TCP port
//! under a temp dir (`--no-defaults`: the host's my.cnf is never read); DA's
//! credentials are a real user with a password in a DA-style `mysql.conf`.

use fpm_doctor::sim::{self, SimDomain, SimServer, SimUser};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MARIADBD: &str = "/usr/sbin/mariadbd";
const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
const CLIENT: &str = "/usr/bin/mariadb";
/// Backslash, quote and `#`: the defaults file must carry them verbatim.
const DA_PASS: &str = "Da#p\\ss\"w1";

fn require_tools() {
    let missing: Vec<&str> = [MARIADBD, INSTALL_DB, CLIENT]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "the MariaDB test needs {missing:?}: run `./build.sh test` (it installs mariadb-server and mariadb-client)"
    );
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "mariadbd --user=root needs root: run `./build.sh test` as root"
    );
}

/// mariadbd in a temp dir; Drop kills it (also when the test panics).
struct Maria {
    child: Child,
    socket: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl Drop for Maria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Maria {
    fn start(dir: &Path, socket: PathBuf) -> Maria {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let out = Command::new(INSTALL_DB)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(MARIADBD)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-log-bin",
                "--innodb-lock-wait-timeout=120",
            ])
            .args(["--innodb-buffer-pool-size=16M", "--skip-name-resolve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut m = Maria {
            child,
            socket,
            port,
            dir: dir.to_path_buf(),
        };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&m.socket).is_err() {
            if let Some(st) = m.child.try_wait().unwrap() {
                panic!("mariadbd exited ({st}): {}", m.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "mariadbd did not start: {}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("err.log")).unwrap_or_default()
    }

    /// Runs SQL as root over the socket.
    fn root_sql(&self, sql: &str) -> String {
        let out = Command::new(CLIENT)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A client session as alice_wp (TCP when `tcp`), fed on stdin.
    fn session(&self, tcp: bool, sql: &str) -> Child {
        let mut c = Command::new(CLIENT);
        c.arg("--no-defaults");
        if tcp {
            c.args(["--protocol=TCP", "--host=127.0.0.1"])
                .arg(format!("--port={}", self.port));
        } else {
            c.arg(format!("--socket={}", self.socket.display()));
        }
        let mut child = c
            .args([
                "-ualice_wp",
                "-palice-secret",
                "--batch",
                "--skip-column-names",
                "--unbuffered",
                "alice_wp",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.as_mut().unwrap().write_all(sql.as_bytes()).unwrap();
        child
    }
}

fn fpm_doctor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fpm-doctor"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lock_wait_is_reported_and_killing_the_blocker_frees_the_waiter() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("T");
    let mut s = SimServer::new("nginx", "8.3");
    s.users = vec![SimUser::new(
        "alice",
        "admin",
        5001,
        vec![SimDomain::new("alice.test")],
    )];
    sim::write_tree(&tree, &s).unwrap();
    sim::rewrite(&tree).unwrap();
    // The server socket lives in the tree: the config names its server path.
    let m = Maria::start(&tmp.path().join("db"), tree.join("var/lib/mysql/mysql.sock"));
    let da_pass_sql = DA_PASS.replace('\\', "\\\\");
    m.root_sql(&format!(
        "CREATE USER 'da_admin'@'localhost' IDENTIFIED BY '{da_pass_sql}'; \
GRANT ALL PRIVILEGES ON *.* TO 'da_admin'@'localhost' WITH GRANT OPTION; \
CREATE DATABASE alice_wp; \
CREATE USER 'alice_wp'@'localhost' IDENTIFIED BY 'alice-secret'; \
CREATE USER 'alice_wp'@'127.0.0.1' IDENTIFIED BY 'alice-secret'; \
GRANT ALL ON alice_wp.* TO 'alice_wp'@'localhost'; GRANT ALL ON alice_wp.* TO 'alice_wp'@'127.0.0.1'; \
CREATE TABLE alice_wp.wp_options (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; \
INSERT INTO alice_wp.wp_options VALUES (1, 0);"
    ));
    let conf = tree.join("usr/local/directadmin/conf/mysql.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, format!("user=da_admin\npasswd={DA_PASS}\n")).unwrap();
    let cfg = tmp.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[mysql]\nclient = \"{CLIENT}\"\nsocket = \"/var/lib/mysql/mysql.sock\"\nlong_query_secs = 2\n"
        ),
    )
    .unwrap();

    // Session 1 (unix socket) holds the row lock and stays open.
    let mut blocker = m.session(
        false,
        "BEGIN; SELECT CONNECTION_ID(); SELECT v FROM wp_options WHERE id = 1 FOR UPDATE; SELECT 'locked';\n",
    );
    let mut lines = BufReader::new(blocker.stdout.take().unwrap()).lines();
    let blocker_id: u64 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    assert_eq!(lines.next().unwrap().unwrap().trim(), "0");
    assert_eq!(lines.next().unwrap().unwrap().trim(), "locked");
    // Session 2 (TCP) waits for it.
    let mut waiter = m.session(
        true,
        "UPDATE wp_options SET v = v + 1 WHERE id = 1; SELECT 'updated';\n",
    );
    drop(waiter.stdin.take()); // the client exits after its statements
    std::thread::sleep(Duration::from_secs(3));

    let root = tree.to_str().unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let (_, out, err) = fpm_doctor(&[
        "scan",
        "--root",
        root,
        "--config",
        cfg_s,
        "--json",
        "--no-probe",
        "--check",
        "mysql-stall",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    let findings = r["findings"].as_array().unwrap();
    let mine: Vec<&serde_json::Value> = findings.iter().filter(|f| f["check"] == "mysql-stall").collect();
    let lock = mine
        .iter()
        .find(|f| f["mysql"]["blocking"].is_array())
        .unwrap_or_else(|| panic!("no lock wait in {out}\n{}", m.log()));
    assert_eq!(lock["mysql"]["thread"], blocker_id, "{lock}");
    assert_eq!(lock["severity"], "critical", "{lock}");
    assert_eq!(lock["user"], "alice");
    assert_eq!(lock["mysql"]["db_user"], "alice_wp");
    let waiter_id = lock["mysql"]["blocking"][0].as_u64().unwrap();
    assert_ne!(waiter_id, blocker_id);
    let long = mine
        .iter()
        .find(|f| f["mysql"]["thread"] == waiter_id)
        .unwrap_or_else(|| panic!("no long-running query in {out}"));
    assert_eq!(long["mysql"]["waits_for"], blocker_id);
    assert!(long["mysql"]["seconds"].as_u64().unwrap() >= 2, "{long}");
    assert_eq!(long["user"], "alice");
    assert!(
        long["private"].as_str().unwrap().starts_with("UPDATE wp_options"),
        "{long}"
    );
    assert!(
        !long["message"].as_str().unwrap().contains("UPDATE"),
        "query text is admin-only"
    );
    assert!(!out.contains("Da#p"), "the password never reaches the report");
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "the UPDATE is still waiting"
    );

    let (code, out, err) = fpm_doctor(&[
        "repair", "--root", root, "--config", cfg_s, "--all", "--yes", "--json",
    ]);
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(rep["outcome"], "ok", "{out}");
    assert_eq!(code, 0);
    let steps = rep["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["step"] == "mysql-kill" && s["ok"] == true),
        "{out}"
    );
    // The waiter gets its lock and finishes.
    let start = Instant::now();
    let st = loop {
        if let Some(st) = waiter.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the UPDATE still waits after the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut wout = String::new();
    std::io::Read::read_to_string(waiter.stdout.as_mut().unwrap(), &mut wout).unwrap();
    assert!(st.success() && wout.contains("updated"), "{st} {wout}");
    assert_eq!(
        m.root_sql("SELECT v FROM alice_wp.wp_options WHERE id = 1")
            .trim(),
        "1"
    );
    // Only the blocker died, and the kill is journalled as not undoable.
    assert!(!m
        .root_sql("SELECT ID FROM information_schema.PROCESSLIST")
        .lines()
        .any(|l| l.trim() == blocker_id.to_string()));
    let (_, hist, _) = fpm_doctor(&["history", "--root", root, "--config", cfg_s, "--json"]);
    assert!(hist.contains("\"undoable\": false"), "{hist}");
    let _ = blocker.kill();
    let _ = blocker.wait();
}
