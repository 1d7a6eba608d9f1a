//! Probe against in-process listeners that misbehave in controlled ways.
//! Runs as root (ownership changes); everything lives under temp dirs.

use fpm_doctor::config::Config;
use fpm_doctor::probe::{Endpoint, Prober, SocketState, WorkerIdentity};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn prober(root: &Path, timeout_ms: u64, worker: Option<WorkerIdentity>) -> Prober {
    Prober {
        root: root.to_path_buf(),
        timeout: Duration::from_millis(timeout_ms),
        parallelism: 8,
        tcp: true,
        worker,
    }
}

fn live() -> PathBuf {
    PathBuf::from("/")
}

fn unix(p: &Path) -> Endpoint {
    Endpoint::Unix(p.to_str().unwrap().to_string())
}

/// A temp dir the (simulated) worker can traverse: tempfile makes 0700.
fn open_tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// One FastCGI answer: GET_VALUES_RESULT with all three values.
fn values_result() -> Vec<u8> {
    let mut body = Vec::new();
    for (n, v) in [
        ("FCGI_MAX_CONNS", "5"),
        ("FCGI_MAX_REQS", "7"),
        ("FCGI_MPXS_CONNS", "0"),
    ] {
        body.push(n.len() as u8);
        body.push(v.len() as u8);
        body.extend_from_slice(n.as_bytes());
        body.extend_from_slice(v.as_bytes());
    }
    let pad = (8 - body.len() % 8) % 8;
    let mut rec = vec![1, 10, 0, 0];
    rec.extend_from_slice(&(body.len() as u16).to_be_bytes());
    rec.extend_from_slice(&[pad as u8, 0]);
    rec.extend_from_slice(&body);
    rec.resize(rec.len() + pad, 0);
    rec
}

/// Serve every connection on its own thread with `answer`; counts
/// connections. Threads end with the test process.
fn serve(listener: UnixListener, answer: fn(UnixStream)) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || answer(s));
        }
    });
    count
}

fn fastcgi(mut s: UnixStream) {
    let mut hdr = [0u8; 8];
    if s.read_exact(&mut hdr).is_err() {
        return;
    }
    let len = u16::from_be_bytes([hdr[4], hdr[5]]) as usize + hdr[6] as usize;
    let mut body = vec![0u8; len];
    let _ = s.read_exact(&mut body);
    let _ = s.write_all(&values_result());
}

fn silent(s: UnixStream) {
    std::thread::sleep(Duration::from_secs(30));
    drop(s);
}

fn http(mut s: UnixStream) {
    let _ = s.write_all(b"HTTP/1.0 200 OK\r\n");
    std::thread::sleep(Duration::from_secs(5));
}

fn hangup(s: UnixStream) {
    drop(s);
}

fn unknown_type(mut s: UnixStream) {
    let mut hdr = [0u8; 8];
    let _ = s.read_exact(&mut hdr);
    let _ = s.write_all(&[1, 11, 0, 0, 0, 8, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
}

fn fastcgi_at(path: &Path) -> Arc<AtomicUsize> {
    serve(UnixListener::bind(path).unwrap(), fastcgi)
}

#[test]
fn probe_fake_listening_reports_values() {
    let d = open_tempdir();
    let sock = d.path().join("a.sock");
    fastcgi_at(&sock);
    let r = prober(&live(), 1000, None).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::Listening, "{}", r.detail);
    let v = r.fcgi.unwrap();
    assert_eq!(
        (v.max_conns, v.max_reqs, v.mpxs_conns),
        (Some(5), Some(7), Some(0))
    );
    assert!(r.detail.contains("FCGI_MAX_CONNS=5"), "{}", r.detail);
    assert_eq!(r.owner, Some((0, 0)));
    assert!(r.mode.is_some());
}

#[test]
fn probe_fake_silent_peer_times_out() {
    let d = open_tempdir();
    let sock = d.path().join("silent.sock");
    serve(UnixListener::bind(&sock).unwrap(), silent);
    let t = Instant::now();
    let r = prober(&live(), 200, None).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::Timeout, "{}", r.detail);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn probe_fake_http_peer_is_not_fastcgi() {
    let d = open_tempdir();
    let sock = d.path().join("http.sock");
    serve(UnixListener::bind(&sock).unwrap(), http);
    let t = Instant::now();
    let r = prober(&live(), 5000, None).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::NotFastcgi, "{}", r.detail);
    assert!(r.detail.contains("HTTP/1.0 200 OK"), "{}", r.detail);
    assert!(
        t.elapsed() < Duration::from_millis(3000),
        "judged early, took {:?}",
        t.elapsed()
    );
}

#[test]
fn probe_fake_hangup_is_not_fastcgi() {
    let d = open_tempdir();
    let sock = d.path().join("hup.sock");
    serve(UnixListener::bind(&sock).unwrap(), hangup);
    let r = prober(&live(), 1000, None).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::NotFastcgi, "{}", r.detail);
    assert!(r.detail.contains("closed"), "{}", r.detail);
}

#[test]
fn probe_fake_unknown_type_answer_is_listening() {
    let d = open_tempdir();
    let sock = d.path().join("unk.sock");
    serve(UnixListener::bind(&sock).unwrap(), unknown_type);
    let r = prober(&live(), 1000, None).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::Listening, "{}", r.detail);
    assert!(r.fcgi.is_none());
}

#[test]
fn probe_fake_full_backlog_is_busy() {
    let d = open_tempdir();
    let sock = d.path().join("busy.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // Shrink the backlog of the (never accepting) listener; Linux lets
    // listen() be called again on a listening socket.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let mut held = Vec::new();
    let addr = nix::sys::socket::UnixAddr::new(&sock).unwrap();
    loop {
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match nix::sys::socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => held.push(fd),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("unexpected connect error {e}"),
        }
        assert!(held.len() < 1000, "backlog never filled");
    }
    let t = Instant::now();
    let r = prober(&live(), 3000, None).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::Busy, "{}", r.detail);
    assert!(r.detail.contains("(11)"), "{}", r.detail);
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "must not block: {:?}",
        t.elapsed()
    );
    drop(listener);
}

#[test]
fn probe_fake_stale_socket_is_refused() {
    let d = open_tempdir();
    let sock = d.path().join("stale.sock");
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let r = prober(&live(), 1000, None).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::Refused, "{}", r.detail);
    assert!(r.detail.contains("Connection refused (111)"), "{}", r.detail);
    assert!(r.owner.is_some());
}

#[test]
fn probe_fake_missing_and_not_socket() {
    let d = open_tempdir();
    let p = prober(&live(), 500, None);

    let r = p.probe(&unix(&d.path().join("nope.sock")));
    assert_eq!(r.state, SocketState::Missing, "{}", r.detail);

    let r = p.probe(&unix(&d.path().join("no/such/dir/x.sock")));
    assert_eq!(r.state, SocketState::Missing, "{}", r.detail);
    assert!(
        r.detail.contains("directory") && r.detail.contains("/no "),
        "{}",
        r.detail
    );

    let f = d.path().join("file.sock");
    std::fs::write(&f, "x").unwrap();
    let r = p.probe(&unix(&f));
    assert_eq!(r.state, SocketState::NotSocket, "{}", r.detail);
    assert!(r.detail.contains("regular file"), "{}", r.detail);

    let r = p.probe(&unix(d.path()));
    assert_eq!(r.state, SocketState::NotSocket, "{}", r.detail);
    assert!(r.detail.contains("directory"), "{}", r.detail);

    // A file used as a directory component.
    let r = p.probe(&unix(&f.join("x.sock")));
    assert_eq!(r.state, SocketState::Missing, "{}", r.detail);

    // A dangling symlink.
    let l = d.path().join("dangling.sock");
    symlink(d.path().join("gone.sock"), &l).unwrap();
    let r = p.probe(&unix(&l));
    assert_eq!(r.state, SocketState::Missing, "{}", r.detail);
}

fn worker(uid: u32, gids: &[u32]) -> Option<WorkerIdentity> {
    Some(WorkerIdentity {
        name: "nginx".into(),
        uid,
        gids: gids.to_vec(),
    })
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn probe_fake_worker_cannot_write_socket() {
    let d = open_tempdir();
    let sock = d.path().join("priv.sock");
    fastcgi_at(&sock);
    chown(&sock, 12345, 12345);
    chmod(&sock, 0o600);
    let r = prober(&live(), 1000, worker(101, &[101])).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::PermissionDenied, "{}", r.detail);
    assert!(r.detail.contains("srw------- 12345:12345"), "{}", r.detail);
    assert!(
        r.detail.contains("uid 101") && r.detail.contains("cannot write"),
        "{}",
        r.detail
    );
    // Root's own view is kept: fixing the mode alone is enough here.
    assert!(r.detail.contains("as root: listening"), "{}", r.detail);
    assert_eq!(r.owner, Some((12345, 12345)));
    assert_eq!(r.mode, Some(0o600));

    // Without a worker (or with a root worker) root's view stands.
    assert_eq!(
        prober(&live(), 1000, None).probe(&unix(&sock)).state,
        SocketState::Listening
    );
    assert_eq!(
        prober(&live(), 1000, worker(0, &[0])).probe(&unix(&sock)).state,
        SocketState::Listening
    );
    // The owner itself may write.
    assert_eq!(
        prober(&live(), 1000, worker(12345, &[1]))
            .probe(&unix(&sock))
            .state,
        SocketState::Listening
    );
}

#[test]
fn probe_fake_worker_in_socket_group() {
    let d = open_tempdir();
    let sock = d.path().join("grp.sock");
    fastcgi_at(&sock);
    chown(&sock, 12345, 2000);
    chmod(&sock, 0o660);
    let r = prober(&live(), 1000, worker(101, &[101, 2000])).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::Listening, "{}", r.detail);
    let r = prober(&live(), 1000, worker(101, &[101])).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::PermissionDenied, "{}", r.detail);
}

#[test]
fn probe_fake_parent_dir_blocks_worker() {
    let d = open_tempdir();
    let dir = d.path().join("sockets");
    std::fs::create_dir(&dir).unwrap();
    let sock = dir.join("alice.sock");
    fastcgi_at(&sock);
    chmod(&sock, 0o666);
    chown(&dir, 54321, 54321);
    chmod(&dir, 0o700);
    let r = prober(&live(), 1000, worker(101, &[101])).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::PermissionDenied, "{}", r.detail);
    let needle = format!("directory {} is drwx------ 54321:54321", dir.display());
    assert!(r.detail.contains(&needle), "{}", r.detail);
    assert!(r.detail.contains("cannot search"), "{}", r.detail);
}

#[test]
fn probe_fake_path_longer_than_sun_path() {
    let d = open_tempdir();
    let mut dir = d.path().to_path_buf();
    for i in 0..4 {
        dir.push(format!("{i}-{}", "d".repeat(40)));
    }
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("alice.sock");
    assert!(sock.as_os_str().len() > 108);
    // std's bind refuses long paths; bind through the parent's O_PATH fd.
    let parent = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(&dir)
        .unwrap();
    let short = format!("/proc/self/fd/{}/alice.sock", parent.as_raw_fd());
    let listener = UnixListener::bind(&short).unwrap();
    drop(parent);
    assert!(sock.exists());
    fn keep(l: UnixListener) -> Arc<AtomicUsize> {
        serve(l, fastcgi)
    }
    keep(listener);
    let r = prober(&live(), 1000, None).probe(&unix(&sock));
    assert_eq!(r.state, SocketState::Listening, "{}", r.detail);
    // And a long missing path is still Missing, not an error.
    let r = prober(&live(), 1000, None).probe(&unix(&dir.join("bob.sock")));
    assert_eq!(r.state, SocketState::Missing, "{}", r.detail);
}

#[test]
fn probe_fake_probe_all_200_endpoints() {
    let d = open_tempdir();
    let mut eps = Vec::new();
    let mut counters = Vec::new();
    for i in 0..20 {
        let sock = d.path().join(format!("live{i}.sock"));
        counters.push(fastcgi_at(&sock));
        eps.push(unix(&sock));
    }
    for i in 0..180 {
        eps.push(unix(&d.path().join(format!("missing{i}.sock"))));
    }
    // Duplicates are probed once.
    eps.push(eps[0].clone());
    eps.push(eps[25].clone());
    let t = Instant::now();
    let res = prober(&live(), 1000, None).probe_all(&eps);
    assert_eq!(res.len(), 200);
    let live_n = res.values().filter(|r| r.state == SocketState::Listening).count();
    let missing_n = res.values().filter(|r| r.state == SocketState::Missing).count();
    assert_eq!((live_n, missing_n), (20, 180));
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    // Give the accept threads a moment to count, then check: one each.
    std::thread::sleep(Duration::from_millis(50));
    for c in &counters {
        assert_eq!(c.load(Ordering::SeqCst), 1);
    }
    assert!(prober(&live(), 1000, None).probe_all(&[]).is_empty());
}

#[test]
fn probe_fake_root_mapping() {
    let root = tempfile::tempdir().unwrap(); // 0700 on purpose: not judged
    let dir = root.path().join("usr/local/php83/sockets");
    std::fs::create_dir_all(&dir).unwrap();
    fastcgi_at(&dir.join("bob.sock"));
    chmod(&dir.join("bob.sock"), 0o666);
    // Absolute symlinks are resolved inside the root, not on the host.
    symlink("/usr/local/php83/sockets/bob.sock", dir.join("link.sock")).unwrap();
    std::fs::create_dir_all(root.path().join("var/run")).unwrap();
    symlink("../../usr/local/php83/sockets", root.path().join("var/run/php")).unwrap();

    let cfg = Config::load(None, Some(root.path())).unwrap();
    let p = Prober::from_config(&cfg, worker(101, &[101]));
    assert!(!p.tcp, "TCP is not probed on an offline root by default");
    for path in [
        "/usr/local/php83/sockets/bob.sock",
        "/usr/local/php83/sockets/link.sock",
        "/var/run/php/bob.sock",
        "/usr/local/php83/../php83/sockets/./bob.sock",
    ] {
        let r = p.probe(&Endpoint::Unix(path.into()));
        assert_eq!(r.state, SocketState::Listening, "{path}: {}", r.detail);
    }
    let r = prober(root.path(), 1000, None).probe(&Endpoint::Unix("/usr/local/php83/sockets/x.sock".into()));
    assert_eq!(r.state, SocketState::Missing);
    assert!(
        r.detail.contains("/usr/local/php83/sockets/x.sock"),
        "{}",
        r.detail
    );
    assert!(
        !r.detail.contains(root.path().to_str().unwrap()),
        "server paths only: {}",
        r.detail
    );
}

#[test]
fn probe_fake_tcp() {
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut hdr = [0u8; 8];
            let _ = s.read_exact(&mut hdr);
            let mut body = vec![0u8; u16::from_be_bytes([hdr[4], hdr[5]]) as usize + hdr[6] as usize];
            let _ = s.read_exact(&mut body);
            let _ = s.write_all(&values_result());
        }
    });
    let ep = Endpoint::parse_nginx(&format!("127.0.0.1:{port}")).unwrap();
    let r = prober(&live(), 1000, None).probe(&ep);
    assert_eq!(r.state, SocketState::Listening, "{}", r.detail);
    let ep = Endpoint::parse_nginx(&format!("localhost:{port}")).unwrap();
    assert_eq!(
        prober(&live(), 1000, None).probe(&ep).state,
        SocketState::Listening
    );

    let mut off = prober(&live(), 1000, None);
    off.tcp = false;
    let r = off.probe(&ep);
    assert_eq!(r.state, SocketState::NotProbed);
    assert!(!r.detail.is_empty());

    // Accepted by the kernel, never answered.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = Endpoint::parse_nginx(&format!("127.0.0.1:{}", mute.local_addr().unwrap().port())).unwrap();
    let r = prober(&live(), 200, None).probe(&ep);
    assert_eq!(r.state, SocketState::Timeout, "{}", r.detail);

    // A port nobody listens on.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = prober(&live(), 1000, None).probe(&Endpoint::parse_nginx(&format!("127.0.0.1:{free}")).unwrap());
    assert_eq!(r.state, SocketState::Refused, "{}", r.detail);
    assert!(r.detail.contains("Connection refused"), "{}", r.detail);
}

#[test]
fn probe_fake_worker_from_accounts() {
    let acc = fpm_doctor::accounts::Accounts::parse(
        b"nginx:x:101:101::/nonexistent:/bin/false\n",
        b"nginx:x:101:\naccess:x:2000:nginx\n",
    );
    let w = WorkerIdentity::from_accounts(&acc, "nginx").unwrap();
    assert_eq!((w.uid, w.gids.clone()), (101, vec![101, 2000]));
    assert!(WorkerIdentity::from_accounts(&acc, "www-data").is_none());
}
