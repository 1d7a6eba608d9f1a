//! Probe against a real php-fpm 8.2 master started without systemd, all under
//! a temp dir used as `--root`. Needs root (php-fpm drops to `nobody`).

use fpm_doctor::probe::{Endpoint, Prober, SocketState, WorkerIdentity};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FPM: &str = "/usr/sbin/php-fpm8.2";
const SOCK: &str = "/usr/local/php82/sockets/alice.sock";

/// Skips loudly (never a silent pass) when the daemon is not installed.
fn fpm_available() -> bool {
    if Path::new(FPM).exists() {
        return true;
    }
    eprintln!("SKIPPED: {FPM} is not installed; install php-fpm8.2 to run the real-daemon probe tests");
    false
}

/// The master and its workers, killed (SIGKILL to the whole process group)
/// and reaped on drop, also when an assertion fails.
struct Fpm {
    child: Option<Child>,
    pgid: i32,
    root: PathBuf,
}

impl Fpm {
    fn start(root: &Path, extra_pool: &str) -> Fpm {
        // Orphaned workers are reparented to us, so we can reap them instead
        // of leaving zombies to a PID 1 that may not wait().
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        std::fs::create_dir_all(root.join("usr/local/php82/sockets")).unwrap();
        let conf = root.join("php-fpm.conf");
        let r = root.display();
        std::fs::write(
            &conf,
            format!(
                "[global]\nerror_log = {r}/fpm-error.log\npid = {r}/fpm.pid\ndaemonize = no\n\n\
                 [alice]\nlisten = {r}{SOCK}\nuser = nobody\ngroup = nogroup\n\
                 pm = static\npm.max_children = 1\n{extra_pool}\n"
            ),
        )
        .unwrap();
        let child = Command::new(FPM)
            .args(["--nodaemonize", "-R", "--fpm-config"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn php-fpm");
        let pgid = child.id() as i32;
        Fpm {
            child: Some(child),
            pgid,
            root: root.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("fpm-error.log")).unwrap_or_default()
    }

    /// Wait until a worker is up: the socket answers FastCGI.
    fn wait_listening(&mut self, p: &Prober) {
        let t = Instant::now();
        loop {
            let r = p.probe(&Endpoint::Unix(SOCK.into()));
            if r.state == SocketState::Listening {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("php-fpm exited ({st}); log:\n{}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "php-fpm never listened ({:?}: {}); log:\n{}",
                r.state,
                r.detail,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Members of our process group, zombies included.
    fn group_pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // Fields after the parenthesised comm: state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
                continue;
            };
            if rest.split_whitespace().nth(2).and_then(|g| g.parse::<i32>().ok()) == Some(self.pgid) {
                out.push(pid);
            }
        }
        out
    }

    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        let _ = child.wait();
        for pid in self.group_pids() {
            // Workers of the dead master are ours now (subreaper).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

impl Drop for Fpm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn prober(root: &Path, worker: Option<WorkerIdentity>) -> Prober {
    Prober {
        root: root.to_path_buf(),
        timeout: Duration::from_millis(2000),
        parallelism: 4,
        tcp: false,
        worker,
    }
}

#[test]
fn probe_real_fpm_listening_then_refused_after_sigkill() {
    if !fpm_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut fpm = Fpm::start(root.path(), "");
    let p = prober(root.path(), None);
    fpm.wait_listening(&p);
    let workers = fpm.group_pids().len();
    assert!(
        workers >= 2,
        "master + 1 worker in the process group, saw {workers}"
    );

    let r = p.probe(&Endpoint::Unix(SOCK.into()));
    println!("php-fpm 8.2 GET_VALUES: {:?} / {}", r.fcgi, r.detail);
    assert_eq!(r.state, SocketState::Listening, "{}", r.detail);
    // php-fpm implements GET_VALUES but only knows FCGI_MPXS_CONNS.
    let v = r.fcgi.clone().expect("values parsed");
    assert_eq!(v.mpxs_conns, Some(0));
    assert_eq!(r.owner, Some((0, 0)));
    assert_eq!(r.mode, Some(0o660), "php-fpm's default listen.mode");
    // Each probe closes its connection, so the single child is free again.
    for _ in 0..3 {
        assert_eq!(
            p.probe(&Endpoint::Unix(SOCK.into())).state,
            SocketState::Listening
        );
    }

    // Default listen.owner/group is root:root 0660: nginx's worker (here
    // www-data, not in group root) would get EACCES.
    let w = WorkerIdentity {
        name: "www-data".into(),
        uid: 33,
        gids: vec![33],
    };
    let r = prober(root.path(), Some(w)).probe(&Endpoint::Unix(SOCK.into()));
    assert_eq!(r.state, SocketState::PermissionDenied, "{}", r.detail);
    assert!(r.detail.contains("srw-rw---- 0:0"), "{}", r.detail);

    // Other paths in the same tree.
    let r = p.probe(&Endpoint::Unix("/usr/local/php82/sockets/bob.sock".into()));
    assert_eq!(r.state, SocketState::Missing, "{}", r.detail);
    let r = p.probe(&Endpoint::Unix("/php-fpm.conf".into()));
    assert_eq!(r.state, SocketState::NotSocket, "{}", r.detail);

    // SIGKILL leaves the socket file behind with nobody listening.
    fpm.kill();
    assert!(
        root.path().join(&SOCK[1..]).exists(),
        "socket file stays after SIGKILL"
    );
    let r = p.probe(&Endpoint::Unix(SOCK.into()));
    assert_eq!(r.state, SocketState::Refused, "{}", r.detail);
    assert!(r.detail.contains("Connection refused (111)"), "{}", r.detail);
    assert!(fpm.group_pids().is_empty(), "no php-fpm process left");
}

#[test]
fn probe_real_fpm_exhausted_pool_is_busy() {
    if !fpm_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // The smallest queue php-fpm accepts, so exhaustion is reachable.
    let mut fpm = Fpm::start(root.path(), "listen.backlog = 0");
    let p = prober(root.path(), None);
    fpm.wait_listening(&p);

    // Hold connections that never send a request: the one child sits in
    // read(), the rest wait in the backlog until connect() says EAGAIN.
    let addr = nix::sys::socket::UnixAddr::new(&root.path().join(&SOCK[1..])).unwrap();
    let mut held = Vec::new();
    let mut saw_eagain = false;
    for _ in 0..200 {
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => held.push(fd),
            Err(nix::errno::Errno::EAGAIN) => {
                saw_eagain = true;
                break;
            }
            Err(e) => panic!("connect: {e}"),
        }
        // Let the child pick up the first connection before queueing more.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        saw_eagain,
        "backlog never filled after {} connections",
        held.len()
    );
    let t = Instant::now();
    let r = p.probe(&Endpoint::Unix(SOCK.into()));
    assert_eq!(r.state, SocketState::Busy, "{}", r.detail);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "must not block: {:?}",
        t.elapsed()
    );

    // Closing the connection the child is reading lets it take the next
    // queued one (and hang on it): the queue has room again, so a probe now
    // connects but gets no answer in time.
    drop(held.remove(0));
    std::thread::sleep(Duration::from_millis(300));
    let mut short = prober(root.path(), None);
    short.timeout = Duration::from_millis(300);
    let r = short.probe(&Endpoint::Unix(SOCK.into()));
    assert_eq!(r.state, SocketState::Timeout, "{}", r.detail);
    drop(held);
    fpm.kill();
}
