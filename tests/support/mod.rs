//! Real daemons for end-to-end tests, without systemd.
//!
//! A simulated tree `T` is written under a temp dir; the daemons run in a
//! private mount namespace where DirectAdmin's real paths are bind mounts of
//! the tree (`/usr/local/directadmin` = `T/usr/local/directadmin`, …), so
//! nginx and php-fpm read the generated configs verbatim and the configs say
//! `unix:/usr/local/php82/sockets/alice.sock` literally. Nothing is written
//! to the machine's real /etc, /usr/local, /var or /run: the namespace is
//! `unshare -m --propagation private`, and new mount points are only made in
//! the namespace's own tmpfs. The scanner runs outside, with `--root T`.
//!
//! Debian ships only PHP 8.2, so every "PHP X.Y" master is `php-fpm8.2`
//! reading `/usr/local/phpXY/etc/php-fpm.conf`: what matters to nginx and
//! the scanner is which socket paths are served.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";
pub const PHP_FPM: &str = "/usr/sbin/php-fpm8.2";
const WAIT: Duration = Duration::from_secs(15);

/// Fail (never skip) when the environment cannot run the real daemons.
pub fn require_tools() {
    let mut missing = Vec::new();
    for p in [NGINX, PHP_FPM] {
        if !Path::new(p).exists() {
            missing.push(p.to_string());
        }
    }
    for c in ["unshare", "nsenter", "mount", "curl", "openssl"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            missing.push(c.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "end-to-end tests need {missing:?}: run `./build.sh test` (it installs nginx, php8.2-fpm, curl, openssl, util-linux)"
    );
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "end-to-end tests need root (mount namespaces, php-fpm pools per user): run `./build.sh test` as root"
    );
}

/// A currently free TCP port on 127.0.0.1 (the OS hands out distinct ones,
/// so tests running in parallel do not collide).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Self-signed certificate + key (PEM) made by `openssl req`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=server.sim.test",
        ])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: String,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Stop {
    /// SIGQUIT: php-fpm finishes, removes its socket files and exits.
    Graceful,
    /// SIGKILL to the master and its workers: the socket file stays behind
    /// with nothing listening (like an OOM kill or `systemctl kill -s KILL`).
    Kill,
}

/// The namespace and every daemon in it. Drop kills them all, also when a
/// test panics.
pub struct Daemons {
    root: PathBuf,
    holder: Child,
    ns: String,
    procs: BTreeMap<String, Child>,
}

/// Directories of the tree mounted at their real paths.
const TREE_DIRS: &[&str] = &[
    "/usr/local/directadmin",
    "/etc/nginx",
    "/var/log",
    "/var/lib/nginx",
    "/var/www",
    "/home",
    "/run",
];

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Tree passwd/group lines first (they define nginx, alice, …), then the
/// host's lines for names the tree lacks (root, www-data, …).
fn merged_db(tree: &Path, host: &str) -> String {
    let tree = fs::read_to_string(tree).unwrap_or_default();
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split(':').next()).collect();
    let mut out = tree.clone();
    for l in fs::read_to_string(host).unwrap_or_default().lines() {
        if !names.contains(&l.split(':').next().unwrap_or("")) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Kill the daemon when the spawning test thread dies without running Drop.
fn spawn_guarded(cmd: &mut Command) -> std::io::Result<Child> {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.process_group(0).spawn()
}

impl Daemons {
    /// Set up the namespace over the tree at `root` (no daemons yet).
    pub fn start(root: &Path) -> Daemons {
        require_tools();
        let root = root.canonicalize().unwrap();
        let stage = root.join(".ns");
        fs::create_dir_all(&stage).unwrap();
        for d in TREE_DIRS {
            fs::create_dir_all(root.join(&d[1..])).unwrap();
        }
        fs::write(
            stage.join("passwd"),
            merged_db(&root.join("etc/passwd"), "/etc/passwd"),
        )
        .unwrap();
        fs::write(
            stage.join("group"),
            merged_db(&root.join("etc/group"), "/etc/group"),
        )
        .unwrap();

        // /usr/local is always overlaid (tmpfs + the host's entries bound
        // back), so php prefixes can be added later. Other dirs are bound
        // over the host's; a missing one gets its parent overlaid first.
        let mut overlays = vec!["/usr/local".to_string()];
        for d in TREE_DIRS {
            let parent = Path::new(d).parent().unwrap().to_string_lossy().into_owned();
            if !Path::new(d).exists() && !overlays.contains(&parent) {
                assert!(Path::new(&parent).is_dir(), "{parent} missing on this machine");
                overlays.push(parent);
            }
        }
        let t = sh_quote(&root.to_string_lossy());
        let mut script = format!(
            "set -eu\nT={t}\nS=\"$T/.ns\"\n\
             overlay() {{\n  k=\"$S/keep$(echo \"$1\" | tr / _)\"; mkdir -p \"$k\"\n\
               mount --rbind \"$1\" \"$k\"\n  mount -t tmpfs -o mode=755 fpm-doctor-sim \"$1\"\n\
               for e in \"$k\"/* \"$k\"/.[!.]*; do\n\
                 [ -e \"$e\" ] || [ -L \"$e\" ] || continue\n    n=\"$1/${{e##*/}}\"\n\
                 if [ -L \"$e\" ]; then cp -P \"$e\" \"$n\"\n\
                 elif [ -d \"$e\" ]; then mkdir \"$n\"; mount --rbind \"$e\" \"$n\"\n\
                 else : > \"$n\"; mount --bind \"$e\" \"$n\"; fi\n  done\n}}\n\
             {BIND_DIR}\n"
        );
        for o in &overlays {
            script.push_str(&format!("overlay {}\n", sh_quote(o)));
        }
        for d in TREE_DIRS {
            script.push_str(&format!("bind_dir \"$T{d}\" {d}\n"));
        }
        for p in tree_php_prefixes(&root) {
            script.push_str(&format!("bind_dir \"$T{p}\" {p}\n"));
        }
        script.push_str(
            "mount --bind \"$S/passwd\" /etc/passwd\nmount --bind \"$S/group\" /etc/group\n\
             echo ready\nexec sleep 100000\n",
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut holder = spawn_guarded(&mut cmd).expect("run unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().unwrap();
            panic!(
                "mount namespace setup failed (needs root and CAP_SYS_ADMIN): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ns = format!("--mount=/proc/{}/ns/mnt", holder.id());
        Daemons {
            root,
            holder,
            ns,
            procs: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host path of a server path.
    pub fn host(&self, server_path: &str) -> PathBuf {
        self.root.join(server_path.trim_start_matches('/'))
    }

    fn ns_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(&self.ns).arg("--").arg(program);
        c
    }

    /// Run a command inside the namespace.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.ns_cmd(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Bind `T/usr/local/phpXY` dirs that appeared after start (an upgrade).
    fn sync_php_mounts(&self) {
        let mut script = format!("set -eu\n{BIND_DIR}\n");
        for p in tree_php_prefixes(&self.root) {
            let t = sh_quote(&self.host(&p).to_string_lossy());
            script.push_str(&format!("mountpoint -q {p} || bind_dir {t} {p}\n"));
        }
        let out = self.run("sh", &["-c", &script]);
        assert!(
            out.status.success(),
            "mount php prefix: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start a php-fpm master for `release` ("8.2") on
    /// `/usr/local/phpXY/etc/php-fpm.conf`, and wait until every socket its
    /// pools listen on accepts connections.
    pub fn start_fpm(&mut self, release: &str) {
        self.sync_php_mounts();
        let xy = release.replace('.', "");
        let name = format!("php-fpm{xy}");
        let conf = format!("/usr/local/php{xy}/etc/php-fpm.conf");
        let log = fs::File::create(self.root.join(format!(".ns/{name}.out"))).unwrap();
        let mut cmd = self.ns_cmd(PHP_FPM);
        cmd.args(["--nodaemonize", "--fpm-config", &conf])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = spawn_guarded(&mut cmd).expect("spawn php-fpm");
        self.procs.insert(name.clone(), child);
        for sock in self.fpm_listens(&xy) {
            let host = self.host(&sock);
            self.wait_for(&format!("{name} listening on {sock}"), |d| {
                d.check_alive(&name);
                std::os::unix::net::UnixStream::connect(&host).is_ok()
            });
        }
    }

    /// `listen =` values of the master config and the pools it includes.
    fn fpm_listens(&self, xy: &str) -> Vec<String> {
        let mut files = vec![self.host(&format!("/usr/local/php{xy}/etc/php-fpm.conf"))];
        let users = self.host("/usr/local/directadmin/data/users");
        let mut dirs: Vec<_> = fs::read_dir(users).unwrap().map(|e| e.unwrap().path()).collect();
        dirs.sort();
        files.extend(dirs.into_iter().map(|d| d.join(format!("php/php-fpm{xy}.conf"))));
        let mut out = Vec::new();
        for f in files {
            for l in fs::read_to_string(f).unwrap_or_default().lines() {
                if let Some((k, v)) = l.split_once('=') {
                    if k.trim() == "listen" {
                        out.push(v.trim().to_string());
                    }
                }
            }
        }
        out
    }

    pub fn stop_fpm(&mut self, release: &str, how: Stop) {
        let name = format!("php-fpm{}", release.replace('.', ""));
        let mut child = self
            .procs
            .remove(&name)
            .unwrap_or_else(|| panic!("{name} not running"));
        let pid = child.id() as i32;
        match how {
            Stop::Graceful => unsafe {
                libc::kill(pid, libc::SIGQUIT);
            },
            Stop::Kill => unsafe {
                libc::kill(-pid, libc::SIGKILL);
            },
        }
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < WAIT, "{name} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Leftover workers would keep a killed socket answering.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }

    /// Start nginx (`daemon off`, own process group) and wait for the ports
    /// of directadmin.conf to accept connections.
    pub fn start_nginx(&mut self) {
        let log = fs::File::create(self.root.join(".ns/nginx.out")).unwrap();
        let mut cmd = self.ns_cmd(NGINX);
        cmd.args(["-e", "/var/log/nginx/error.log", "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = spawn_guarded(&mut cmd).expect("spawn nginx");
        self.procs.insert("nginx".into(), child);
        for port in [self.port("port_80"), self.port("port_443")] {
            self.wait_for(&format!("nginx on port {port}"), |d| {
                d.check_alive("nginx");
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
    }

    /// A port from the tree's directadmin.conf.
    pub fn port(&self, key: &str) -> u16 {
        let dac = fs::read_to_string(self.host("/usr/local/directadmin/conf/directadmin.conf")).unwrap();
        dac.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} not in directadmin.conf"))
    }

    /// `nginx -s reload`, then wait until every old worker is gone, so the
    /// next request is served with the new configuration.
    pub fn reload_nginx(&mut self) {
        let old = self.nginx_workers();
        let out = self.run(NGINX, &["-e", "/var/log/nginx/error.log", "-s", "reload"]);
        assert!(
            out.status.success(),
            "nginx -s reload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait_nginx_reloaded(&old);
    }

    /// The running nginx master's workers (take them before something else
    /// reloads nginx, then [`Daemons::wait_nginx_reloaded`]).
    pub fn nginx_workers(&self) -> Vec<u32> {
        children_of(self.procs["nginx"].id())
    }

    /// Wait until none of `old` is a worker any more: a reload sent by
    /// someone else (a repair's `nginx -s reload`) has taken effect.
    pub fn wait_nginx_reloaded(&mut self, old: &[u32]) {
        let master = self.procs["nginx"].id();
        self.wait_for("nginx workers restarted after reload", |d| {
            d.check_alive("nginx");
            let now = children_of(master);
            !now.is_empty() && now.iter().all(|p| !old.contains(p))
        });
    }

    /// Pid of the process holding the namespace.
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// `nsenter --mount=/proc/<holder>/ns/mnt --`: prefix of a command line
    /// that runs a program inside the namespace (for a repair's config).
    pub fn nsenter_prefix(&self) -> String {
        format!("nsenter {} --", self.ns)
    }

    /// Start any daemon (kept in the foreground, own process group) inside
    /// the namespace, output to `.ns/<name>.out`, and wait for `ports`.
    pub fn start_daemon(&mut self, name: &str, program: &str, args: &[&str], ports: &[u16]) {
        let log = fs::File::create(self.root.join(format!(".ns/{name}.out"))).unwrap();
        let mut cmd = self.ns_cmd(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = spawn_guarded(&mut cmd).unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        self.procs.insert(name.into(), child);
        for &port in ports {
            self.wait_for(&format!("{name} on port {port}"), |d| {
                d.check_alive(name);
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
    }

    /// Output of a daemon started with [`Daemons::start_daemon`].
    pub fn daemon_out(&self, name: &str) -> String {
        fs::read_to_string(self.root.join(format!(".ns/{name}.out"))).unwrap_or_default()
    }

    /// `nginx -t` inside the namespace: (success, output).
    pub fn nginx_test(&self) -> (bool, String) {
        let out = self.run(NGINX, &["-t", "-e", "/var/log/nginx/error.log"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// GET `https?://host:port/path` sent to 127.0.0.1 with curl.
    pub fn get(&self, https: bool, host: &str, path: &str) -> Resp {
        let (scheme, port) = if https {
            ("https", self.port("port_443"))
        } else {
            ("http", self.port("port_80"))
        };
        let out = Command::new("curl")
            .args(["-sS", "-k", "--max-time", "10", "-w", "\n%{http_code}"])
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("{scheme}://{host}:{port}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Resp {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
        }
    }

    /// Every nginx error log of the tree, for assertions and messages.
    pub fn nginx_errors(&self) -> String {
        let mut out = String::new();
        let mut files = vec![self.host("/var/log/nginx/error.log")];
        let mut doms: Vec<_> = fs::read_dir(self.host("/var/log/nginx/domains"))
            .map(|r| r.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        doms.sort();
        files.extend(
            doms.into_iter()
                .filter(|p| p.to_string_lossy().ends_with("error.log")),
        );
        for f in files {
            if let Ok(t) = fs::read_to_string(&f) {
                if !t.is_empty() {
                    out.push_str(&format!("==> {} <==\n{t}", f.display()));
                }
            }
        }
        out
    }

    /// Daemon output and FPM logs.
    pub fn daemon_logs(&self) -> String {
        let mut out = String::new();
        let mut outs: Vec<String> = fs::read_dir(self.root.join(".ns"))
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".out"))
                    .collect()
            })
            .unwrap_or_default();
        outs.sort();
        for f in outs {
            if let Ok(t) = fs::read_to_string(self.root.join(".ns").join(&f)) {
                out.push_str(&format!("==> {f} <==\n{t}"));
            }
        }
        for x in ["82", "83"] {
            if let Ok(t) = fs::read_to_string(self.host(&format!("/var/log/php-fpm{x}.log"))) {
                out.push_str(&format!("==> php-fpm{x}.log <==\n{t}"));
            }
        }
        out
    }

    fn check_alive(&mut self, name: &str) {
        if let Some(c) = self.procs.get_mut(name) {
            if let Some(st) = c.try_wait().unwrap() {
                panic!(
                    "{name} exited ({st}):\n{}{}",
                    self.daemon_logs(),
                    self.nginx_errors()
                );
            }
        }
    }

    /// Bounded polling.
    fn wait_for(&mut self, what: &str, mut ok: impl FnMut(&mut Self) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            if start.elapsed() > WAIT {
                panic!(
                    "timed out waiting for {what}:\n{}{}",
                    self.daemon_logs(),
                    self.nginx_errors()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.procs) {
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
        // The namespace (and its mounts) ends with its last process.
        unsafe {
            libc::kill(-(self.holder.id() as i32), libc::SIGKILL);
        }
        let _ = self.holder.wait();
    }
}

/// `bind_dir SRC DST`: bind a tree dir at its real path. A missing mount
/// point is only ever created inside the namespace's own tmpfs.
const BIND_DIR: &str = "bind_dir() {
  if [ ! -d \"$2\" ]; then
    [ \"$(stat -f -c %T \"$(dirname \"$2\")\")\" = tmpfs ] || { echo \"refusing to mkdir $2 outside the namespace tmpfs\" >&2; exit 1; }
    mkdir \"$2\"
  fi
  mount --bind \"$1\" \"$2\"
}";

/// `/usr/local/phpXY` dirs present in the tree.
fn tree_php_prefixes(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(root.join("usr/local"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("php") && n[3..].bytes().all(|b| b.is_ascii_digit()))
                .map(|n| format!("/usr/local/{n}"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Direct children of `pid` (nginx workers of a master).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state, ppid, …
        let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
            continue;
        };
        if rest.split_whitespace().nth(1).and_then(|v| v.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// A `fpm-doctor … --json` run's output: (exit code, JSON). Panics with
/// stdout and stderr when it is not JSON.
pub fn json_output(out: Output) -> (i32, serde_json::Value) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "--json must print JSON ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// `fpm-doctor <args> --root T --json` from outside the daemons' namespace.
pub fn fpm_doctor_json(args: &[&str], root: &Path) -> (i32, serde_json::Value) {
    json_output(
        Command::new(env!("CARGO_BIN_EXE_fpm-doctor"))
            .args(args)
            .arg("--root")
            .arg(root)
            .arg("--json")
            .output()
            .unwrap(),
    )
}
