//! Live socket probe: is something that speaks FastCGI listening where nginx
//! will connect, and could the nginx worker (not us, root) reach it?
//!
//! The probe never blocks: connect is non-blocking (a full listen backlog
//! makes a blocking connect hang, which is exactly the exhausted-pool case we
//! want to report), and every wait is a poll bounded by the per-endpoint
//! deadline. Paths are resolved component by component inside the root, so
//! `--root` copies with absolute symlinks never escape to the host.

use crate::accounts::Accounts;
use crate::config::Config;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, getsockopt, recv, send, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockType,
    SockaddrLike, SockaddrStorage, UnixAddr,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::Metadata;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where nginx sends FastCGI traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Endpoint {
    /// A unix socket, by server path.
    Unix(String),
    /// `host` is an IP literal (IPv6 without brackets) or a host name.
    Tcp { host: String, port: u16 },
}

impl Endpoint {
    /// Parse a `fastcgi_pass` / upstream `server` address. A bare name (an
    /// upstream block), a variable or an address without port gives `None`:
    /// there is nothing we could connect to without more context.
    pub fn parse_nginx(s: &str) -> Option<Endpoint> {
        let s = s.trim().trim_matches(|c| c == '"' || c == '\'');
        if s.is_empty() || s.contains('$') {
            return None;
        }
        if let Some(path) = s.strip_prefix("unix:") {
            // nginx resolves relative paths against its prefix, which we
            // do not know here; DirectAdmin always writes absolute paths.
            return path.starts_with('/').then(|| Endpoint::Unix(path.to_string()));
        }
        let parse_port = |p: &str| -> Option<u16> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok().filter(|&p| p != 0)
        };
        if let Some(rest) = s.strip_prefix('[') {
            let (host, tail) = rest.split_once(']')?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            let port = parse_port(tail.strip_prefix(':')?)?;
            return Some(Endpoint::Tcp {
                host: host.to_string(),
                port,
            });
        }
        let (host, port) = s.rsplit_once(':')?;
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !valid_host {
            return None;
        }
        Some(Endpoint::Tcp {
            host: host.to_string(),
            port: parse_port(port)?,
        })
    }

    /// The nginx spelling: `unix:/path`, `host:port`, `[v6]:port`.
    pub fn display(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix:{p}"),
            Endpoint::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Endpoint::Tcp { host, port } => format!("{host}:{port}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketState {
    /// No such path (or a parent directory is absent).
    Missing,
    /// Something other than a socket sits at the path.
    NotSocket,
    /// Socket file exists but nothing listens (stale after a crash).
    Refused,
    /// The nginx worker may not reach or write the socket (errno 13).
    PermissionDenied,
    /// Connected, but no FastCGI answer within the timeout.
    Timeout,
    /// Listen backlog full: every child busy and the queue too (EAGAIN).
    Busy,
    /// Something answered, but not FastCGI.
    NotFastcgi,
    /// A FastCGI server answered GET_VALUES.
    Listening,
    /// Deliberately not touched (TCP on an offline root, `--no-probe`, ...).
    NotProbed,
}

impl SocketState {
    pub fn is_live(self) -> bool {
        self == SocketState::Listening
    }

    /// Same spelling as the JSON serialization.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketState::Missing => "missing",
            SocketState::NotSocket => "not_socket",
            SocketState::Refused => "refused",
            SocketState::PermissionDenied => "permission_denied",
            SocketState::Timeout => "timeout",
            SocketState::Busy => "busy",
            SocketState::NotFastcgi => "not_fastcgi",
            SocketState::Listening => "listening",
            SocketState::NotProbed => "not_probed",
        }
    }
}

/// What FCGI_GET_VALUES_RESULT said. php-fpm 8.2 only reports
/// FCGI_MPXS_CONNS=0; the other two stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FcgiValues {
    pub max_conns: Option<u32>,
    pub max_reqs: Option<u32>,
    pub mpxs_conns: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub state: SocketState,
    /// Human evidence: the failing call with its errno, the blocking
    /// permission, the bytes a non-FastCGI peer sent, ...
    pub detail: String,
    /// (uid, gid) of the socket file, when it was found.
    pub owner: Option<(u32, u32)>,
    /// Permission bits (`st_mode & 0o7777`) of the socket file.
    pub mode: Option<u32>,
    /// Set whenever a FastCGI answer was parsed, even if the state is
    /// `PermissionDenied` (root could talk to it; the worker cannot).
    pub fcgi: Option<FcgiValues>,
}

impl ProbeResult {
    fn new(state: SocketState, detail: impl Into<String>) -> ProbeResult {
        ProbeResult {
            state,
            detail: detail.into(),
            owner: None,
            mode: None,
            fcgi: None,
        }
    }

    /// For callers that skip probing (e.g. `--no-probe`).
    pub fn not_probed(detail: impl Into<String>) -> ProbeResult {
        ProbeResult::new(SocketState::NotProbed, detail)
    }
}

/// Who nginx's workers run as; judged against file permissions because the
/// probe itself runs as root, which bypasses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl WorkerIdentity {
    /// The worker as the server's passwd/group describe it.
    pub fn from_accounts(accounts: &Accounts, name: &str) -> Option<WorkerIdentity> {
        let acc = accounts.user(name)?;
        Some(WorkerIdentity {
            name: name.to_string(),
            uid: acc.uid,
            gids: accounts.gids_of(name),
        })
    }

    /// `bit` is 1 (search/execute) or 2 (write). Standard owner, then group,
    /// then other classes; uid 0 has DAC override. ACLs are not consulted.
    fn may(&self, md: &Metadata, bit: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let mode = md.mode();
        let shift = if md.uid() == self.uid {
            6
        } else if self.gids.contains(&md.gid()) {
            3
        } else {
            0
        };
        mode & (bit << shift) != 0
    }
}

pub struct Prober {
    /// "/" or the `--root` dir: a server path P is opened at root+P.
    pub root: PathBuf,
    /// Bound for the whole probe of one endpoint.
    pub timeout: Duration,
    pub parallelism: usize,
    /// Whether TCP endpoints are probed at all.
    pub tcp: bool,
    pub worker: Option<WorkerIdentity>,
}

/// Bytes of sun_path including the terminating NUL.
const SUN_PATH_MAX: usize = 108;
const FCGI_VERSION_1: u8 = 1;
const FCGI_GET_VALUES: u8 = 9;
const FCGI_GET_VALUES_RESULT: u8 = 10;
const FCGI_UNKNOWN_TYPE: u8 = 11;
const FCGI_MAX_TYPE: u8 = 11;
/// Symlink hops before giving up, as Linux does.
const MAX_SYMLINKS: usize = 40;

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn errtext(call: &str, e: Errno) -> String {
    format!("{call}: {} ({})", e.desc(), e as i32)
}

/// `ls -l` style type and permission string.
fn mode_string(md: &Metadata) -> String {
    let ft = md.file_type();
    let t = if ft.is_socket() {
        's'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        '-'
    };
    let m = md.mode();
    let mut s = String::with_capacity(10);
    s.push(t);
    for (i, special, sc) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (m >> i) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, m & special != 0) {
            (true, true) => sc,
            (false, true) => sc.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn kind_of(md: &Metadata) -> &'static str {
    let ft = md.file_type();
    if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_symlink() {
        "a symlink"
    } else {
        "not a socket"
    }
}

fn join_server(comps: &[String]) -> String {
    if comps.is_empty() {
        "/".to_string()
    } else {
        comps.iter().map(|c| format!("/{c}")).collect()
    }
}

/// Result of walking a server path inside the root.
struct Resolved {
    /// Real components (symlinks resolved) of the socket's server path.
    comps: Vec<String>,
    /// Every directory whose entries were looked up, with its metadata.
    dirs: Vec<(String, Metadata)>,
    socket: Metadata,
    /// Set when symlinks were followed, for the detail text.
    via_symlink: bool,
}

/// The FCGI_GET_VALUES request, asking for the three standard variables.
fn get_values_request() -> Vec<u8> {
    let mut body = Vec::new();
    for name in ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"] {
        body.push(name.len() as u8);
        body.push(0); // empty value: it is a query
        body.extend_from_slice(name.as_bytes());
    }
    let pad = (8 - body.len() % 8) % 8;
    let mut rec = vec![FCGI_VERSION_1, FCGI_GET_VALUES, 0, 0];
    rec.extend_from_slice(&(body.len() as u16).to_be_bytes());
    rec.push(pad as u8);
    rec.push(0);
    rec.extend_from_slice(&body);
    rec.resize(rec.len() + pad, 0);
    rec
}

/// Parse FastCGI name-value pairs (1- or 4-byte lengths). Unknown names and
/// non-numeric values are ignored; a truncated pair ends the parse.
fn parse_values(mut body: &[u8]) -> FcgiValues {
    fn len(b: &mut &[u8]) -> Option<usize> {
        let first = *b.first()?;
        if first & 0x80 == 0 {
            *b = &b[1..];
            Some(first as usize)
        } else {
            let raw: [u8; 4] = b.get(..4)?.try_into().ok()?;
            *b = &b[4..];
            Some((u32::from_be_bytes(raw) & 0x7fff_ffff) as usize)
        }
    }
    let mut v = FcgiValues::default();
    while !body.is_empty() {
        let (Some(nl), Some(vl)) = (len(&mut body), len(&mut body)) else {
            break;
        };
        if body.len() < nl.saturating_add(vl) {
            break;
        }
        let (name, rest) = body.split_at(nl);
        let (value, rest) = rest.split_at(vl);
        body = rest;
        let num = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        match name {
            b"FCGI_MAX_CONNS" => v.max_conns = num,
            b"FCGI_MAX_REQS" => v.max_reqs = num,
            b"FCGI_MPXS_CONNS" => v.mpxs_conns = num,
            _ => {}
        }
    }
    v
}

fn values_text(v: &FcgiValues) -> String {
    let parts: Vec<String> = [
        ("FCGI_MAX_CONNS", v.max_conns),
        ("FCGI_MAX_REQS", v.max_reqs),
        ("FCGI_MPXS_CONNS", v.mpxs_conns),
    ]
    .iter()
    .filter_map(|(n, x)| x.map(|x| format!("{n}={x}")))
    .collect();
    if parts.is_empty() {
        "no values".to_string()
    } else {
        parts.join(", ")
    }
}

fn first_bytes(b: &[u8]) -> String {
    let shown = &b[..b.len().min(32)];
    let more = if b.len() > shown.len() { "..." } else { "" };
    format!("\"{}\"{more}", shown.escape_ascii())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Poll one fd until `events` or the deadline. Ok(false) = timed out.
fn wait_for(fd: &OwnedFd, events: PollFlags, deadline: Instant) -> Result<bool, Errno> {
    loop {
        let rem = remaining(deadline);
        if rem.is_zero() {
            return Ok(false);
        }
        // Round up so a sub-millisecond remainder still waits.
        let ms = rem.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Non-blocking connect; waits for completion where the kernel defers it
/// (TCP). Err carries the state and detail to report.
fn connect_nb(addr: &dyn SockaddrLike, deadline: Instant) -> Result<OwnedFd, ProbeResult> {
    let family = addr.family().unwrap_or(AddressFamily::Unix);
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = socket(family, SockType::Stream, flags, None)
        .map_err(|e| ProbeResult::new(SocketState::NotProbed, errtext("socket()", e)))?;
    let fail = |e: Errno| {
        let state = match e {
            Errno::ECONNREFUSED => SocketState::Refused,
            // A unix listener whose backlog is full answers EAGAIN to a
            // non-blocking connect.
            Errno::EAGAIN => SocketState::Busy,
            Errno::ENOENT | Errno::ENOTDIR => SocketState::Missing,
            Errno::EACCES | Errno::EPERM => SocketState::PermissionDenied,
            Errno::ETIMEDOUT => SocketState::Timeout,
            _ => SocketState::Refused,
        };
        ProbeResult::new(state, errtext("connect()", e))
    };
    match connect(fd.as_raw_fd(), addr) {
        Ok(()) => return Ok(fd),
        Err(Errno::EINPROGRESS) | Err(Errno::EINTR) => {}
        Err(e) => return Err(fail(e)),
    }
    match wait_for(&fd, PollFlags::POLLOUT, deadline) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ProbeResult::new(
                SocketState::Timeout,
                "connect(): no answer within the timeout",
            ))
        }
        Err(e) => return Err(fail(e)),
    }
    match getsockopt(&fd, sockopt::SocketError) {
        Ok(0) => Ok(fd),
        Ok(err) => Err(fail(Errno::from_raw(err))),
        Err(e) => Err(fail(e)),
    }
}

/// Send FCGI_GET_VALUES and judge the first record that comes back.
fn handshake(fd: &OwnedFd, deadline: Instant) -> ProbeResult {
    let req = get_values_request();
    let mut sent = 0;
    while sent < req.len() {
        // MSG_NOSIGNAL: a peer that already closed must not SIGPIPE us.
        match send(
            fd.as_raw_fd(),
            &req[sent..],
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => match wait_for(fd, PollFlags::POLLOUT, deadline) {
                Ok(true) => {}
                Ok(false) => {
                    return ProbeResult::new(
                        SocketState::Timeout,
                        "send(): peer not reading within the timeout",
                    )
                }
                Err(e) => return ProbeResult::new(SocketState::NotFastcgi, errtext("poll()", e)),
            },
            Err(e) => return ProbeResult::new(SocketState::NotFastcgi, errtext("send()", e)),
        }
    }

    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let mut chunk = [0u8; 4096];
    loop {
        // Judge as early as the bytes allow, so a chatty non-FastCGI peer is
        // recognised without waiting for the deadline.
        if let Some(&v) = buf.first() {
            if v != FCGI_VERSION_1 || buf.get(1).is_some_and(|&t| t == 0 || t > FCGI_MAX_TYPE) {
                return ProbeResult::new(
                    SocketState::NotFastcgi,
                    format!(
                        "answer is not a FastCGI record; first bytes: {}",
                        first_bytes(&buf)
                    ),
                );
            }
        }
        if buf.len() >= 8 {
            let content_len = u16::from_be_bytes([buf[4], buf[5]]) as usize;
            // Padding is not awaited: the content is all we need.
            if buf.len() >= 8 + content_len {
                return judge_record(buf[1], &buf[8..8 + content_len], &buf);
            }
        }
        match wait_for(fd, PollFlags::POLLIN, deadline) {
            Ok(true) => {}
            Ok(false) => {
                let seen = if buf.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("{} bytes ({})", buf.len(), first_bytes(&buf))
                };
                return ProbeResult::new(
                    SocketState::Timeout,
                    format!("connected, but no FastCGI answer to GET_VALUES within the timeout; got {seen}"),
                );
            }
            Err(e) => return ProbeResult::new(SocketState::NotFastcgi, errtext("poll()", e)),
        }
        match recv(fd.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => {
                let what = if buf.is_empty() {
                    "peer closed the connection without answering GET_VALUES".to_string()
                } else {
                    format!(
                        "peer closed after a partial record; first bytes: {}",
                        first_bytes(&buf)
                    )
                };
                return ProbeResult::new(SocketState::NotFastcgi, what);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(e) => {
                let mut d = errtext("recv()", e);
                if e == Errno::ECONNRESET {
                    // Closing with our request unread makes the kernel reset.
                    d = format!("peer closed the connection without answering GET_VALUES ({d})");
                }
                if !buf.is_empty() {
                    d.push_str(&format!("; first bytes: {}", first_bytes(&buf)));
                }
                return ProbeResult::new(SocketState::NotFastcgi, d);
            }
        }
    }
}

fn judge_record(rtype: u8, content: &[u8], raw: &[u8]) -> ProbeResult {
    match rtype {
        FCGI_GET_VALUES_RESULT => {
            let v = parse_values(content);
            let mut r = ProbeResult::new(
                SocketState::Listening,
                format!("FastCGI GET_VALUES answered: {}", values_text(&v)),
            );
            r.fcgi = Some(v);
            r
        }
        // The spec's answer from a FastCGI server that does not implement
        // management records: still a live FastCGI peer.
        FCGI_UNKNOWN_TYPE if content.first() == Some(&FCGI_GET_VALUES) => ProbeResult::new(
            SocketState::Listening,
            "FastCGI peer answered FCGI_UNKNOWN_TYPE: GET_VALUES not implemented",
        ),
        t => ProbeResult::new(
            SocketState::NotFastcgi,
            format!(
                "FastCGI record type {t} instead of GET_VALUES_RESULT; first bytes: {}",
                first_bytes(raw)
            ),
        ),
    }
}

impl Prober {
    pub fn from_config(cfg: &Config, worker: Option<WorkerIdentity>) -> Prober {
        Prober {
            root: cfg.root.clone(),
            timeout: cfg.probe_timeout(),
            parallelism: cfg.probe.parallelism.max(1),
            tcp: cfg.probe_tcp(),
            worker,
        }
    }

    fn host_of(&self, comps: &[String]) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(comps);
        p
    }

    /// Probe one endpoint. Never panics; never takes much longer than
    /// `timeout` (plus DNS for a TCP host name, itself bounded).
    pub fn probe(&self, ep: &Endpoint) -> ProbeResult {
        // checked_add: an absurd configured timeout must not panic.
        let now = Instant::now();
        let deadline = now
            .checked_add(self.timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86400));
        match ep {
            Endpoint::Unix(path) => self.probe_unix(path, deadline),
            Endpoint::Tcp { host, port } => self.probe_tcp(host, *port, deadline),
        }
    }

    /// Walk `server_path` one component at a time inside the root, following
    /// symlinks (absolute targets are root-relative), like the kernel would
    /// for nginx on the real server.
    fn resolve(&self, server_path: &str) -> Result<Resolved, ProbeResult> {
        let mut todo: Vec<String> = server_path.split('/').rev().map(str::to_string).collect();
        let mut cur: Vec<String> = Vec::new();
        let root_md = std::fs::metadata(&self.root).map_err(|e| {
            ProbeResult::new(
                SocketState::Missing,
                format!(
                    "root {}: {}",
                    self.root.display(),
                    errtext("stat()", errno_of(&e))
                ),
            )
        })?;
        // An offline copy's root dir is whatever held the copy (often 0700
        // from mktemp), not the server's "/": only judge the real one.
        let mut dirs = Vec::new();
        if self.root == Path::new("/") {
            dirs.push(("/".to_string(), root_md));
        }
        let mut hops = 0;
        let mut via_symlink = false;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            let is_last = todo.iter().all(|c| c.is_empty() || c == ".");
            cur.push(c);
            let host = self.host_of(&cur);
            let md = match std::fs::symlink_metadata(&host) {
                Ok(md) => md,
                Err(e) => {
                    let errno = errno_of(&e);
                    let here = join_server(&cur);
                    let state = match errno {
                        Errno::ENOENT | Errno::ENOTDIR => SocketState::Missing,
                        Errno::EACCES => SocketState::PermissionDenied,
                        _ => SocketState::NotSocket,
                    };
                    let what = if is_last || errno != Errno::ENOENT {
                        format!("{here}: {}", errtext("lstat()", errno))
                    } else {
                        format!("directory {here} does not exist ({})", errtext("lstat()", errno))
                    };
                    return Err(ProbeResult::new(state, what));
                }
            };
            if md.file_type().is_symlink() {
                hops += 1;
                via_symlink = true;
                if hops > MAX_SYMLINKS {
                    return Err(ProbeResult::new(
                        SocketState::NotSocket,
                        format!("{}: {}", server_path, errtext("open()", Errno::ELOOP)),
                    ));
                }
                let target = std::fs::read_link(&host).map_err(|e| {
                    ProbeResult::new(
                        SocketState::NotSocket,
                        format!("{}: {}", join_server(&cur), errtext("readlink()", errno_of(&e))),
                    )
                })?;
                let target = target.to_string_lossy();
                cur.pop();
                if target.starts_with('/') {
                    cur.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_string));
                continue;
            }
            if is_last {
                let here = join_server(&cur);
                if !md.file_type().is_socket() {
                    let mut r = ProbeResult::new(
                        SocketState::NotSocket,
                        format!(
                            "{here} is {} ({} {}:{})",
                            kind_of(&md),
                            mode_string(&md),
                            md.uid(),
                            md.gid()
                        ),
                    );
                    r.owner = Some((md.uid(), md.gid()));
                    r.mode = Some(md.mode() & 0o7777);
                    return Err(r);
                }
                return Ok(Resolved {
                    comps: cur,
                    dirs,
                    socket: md,
                    via_symlink,
                });
            }
            if !md.is_dir() {
                return Err(ProbeResult::new(
                    SocketState::Missing,
                    format!(
                        "{} is {}, not a directory ({})",
                        join_server(&cur),
                        kind_of(&md),
                        errtext("connect()", Errno::ENOTDIR)
                    ),
                ));
            }
            dirs.push((join_server(&cur), md));
        }
        // Only "/" (or only dots) was given: the root directory itself.
        Err(ProbeResult::new(
            SocketState::NotSocket,
            format!("{} is a directory", join_server(&cur)),
        ))
    }

    /// What blocks the worker, if anything.
    fn permission_block(&self, res: &Resolved) -> Option<String> {
        let w = self.worker.as_ref()?;
        let who = format!("worker {} (uid {})", w.name, w.uid);
        for (dir, md) in &res.dirs {
            if !w.may(md, 1) {
                return Some(format!(
                    "directory {dir} is {} {}:{}, {who} cannot search it",
                    mode_string(md),
                    md.uid(),
                    md.gid()
                ));
            }
        }
        let md = &res.socket;
        if !w.may(md, 2) {
            return Some(format!(
                "{} is {} {}:{}, {who} cannot write it",
                join_server(&res.comps),
                mode_string(md),
                md.uid(),
                md.gid()
            ));
        }
        None
    }

    fn probe_unix(&self, server_path: &str, deadline: Instant) -> ProbeResult {
        let res = match self.resolve(server_path) {
            Ok(r) => r,
            Err(r) => return r,
        };
        let block = self.permission_block(&res);
        let mut r = self.connect_unix(&res.comps, deadline);
        r.owner = Some((res.socket.uid(), res.socket.gid()));
        r.mode = Some(res.socket.mode() & 0o7777);
        if res.via_symlink {
            r.detail = format!("via symlink to {}; {}", join_server(&res.comps), r.detail);
        }
        if let Some(why) = block {
            // Root's own view is kept as evidence: it tells whether fixing
            // the permission alone will be enough.
            r.detail = format!("{why} (as root: {}: {})", r.state.as_str(), r.detail);
            r.state = SocketState::PermissionDenied;
        }
        r
    }

    fn connect_unix(&self, comps: &[String], deadline: Instant) -> ProbeResult {
        let host = self.host_of(comps);
        // The parent fd must outlive connect(): /proc/self/fd/N refers to it.
        let mut _parent: Option<std::fs::File> = None;
        let addr_path: PathBuf = if host.as_os_str().len() < SUN_PATH_MAX {
            host
        } else {
            // Too long for sun_path: reach it through an O_PATH fd of the
            // parent. Thread-safe, unlike chdir().
            let (Some(parent), Some(name)) = (host.parent(), host.file_name()) else {
                return ProbeResult::new(SocketState::NotProbed, "socket path has no parent directory");
            };
            let dir = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(parent)
            {
                Ok(f) => f,
                Err(e) => {
                    let errno = errno_of(&e);
                    let state = match errno {
                        Errno::ENOENT | Errno::ENOTDIR => SocketState::Missing,
                        Errno::EACCES => SocketState::PermissionDenied,
                        _ => SocketState::NotProbed,
                    };
                    return ProbeResult::new(state, errtext("open(parent, O_PATH)", errno));
                }
            };
            let p = Path::new("/proc/self/fd")
                .join(dir.as_raw_fd().to_string())
                .join(name);
            _parent = Some(dir);
            p
        };
        let addr = match UnixAddr::new(&addr_path) {
            Ok(a) => a,
            Err(e) => {
                return ProbeResult::new(
                    SocketState::NotProbed,
                    format!(
                        "socket name too long even via /proc/self/fd: {}",
                        errtext("sun_path", e)
                    ),
                )
            }
        };
        match connect_nb(&addr, deadline) {
            Ok(fd) => handshake(&fd, deadline),
            Err(r) => r,
        }
    }

    fn probe_tcp(&self, host: &str, port: u16, deadline: Instant) -> ProbeResult {
        if !self.tcp {
            return ProbeResult::not_probed(if self.root == Path::new("/") {
                "TCP probing is disabled by configuration"
            } else {
                "TCP endpoint not probed: with --root, 127.0.0.1 is this machine, not the server"
            });
        }
        let addrs = match resolve_host(host, port, deadline) {
            Ok(a) => a,
            Err(d) => return ProbeResult::new(SocketState::Refused, d),
        };
        let mut last = ProbeResult::new(SocketState::Refused, format!("{host}: no addresses"));
        for a in addrs {
            let Some(storage) = sockaddr_of(a) else {
                continue;
            };
            match connect_nb(&storage, deadline) {
                Ok(fd) => return handshake(&fd, deadline),
                Err(mut r) => {
                    r.detail = format!("{a}: {}", r.detail);
                    last = r;
                    if remaining(deadline).is_zero() {
                        break;
                    }
                }
            }
        }
        last
    }

    /// Each distinct endpoint once, at most `parallelism` at a time.
    pub fn probe_all(&self, eps: &[Endpoint]) -> BTreeMap<Endpoint, ProbeResult> {
        let unique: Vec<&Endpoint> = eps.iter().collect::<BTreeSet<_>>().into_iter().collect();
        let workers = self.parallelism.max(1).min(unique.len());
        let next = AtomicUsize::new(0);
        let mut out = BTreeMap::new();
        std::thread::scope(|s| {
            let work = || {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(ep) = unique.get(i) else { break };
                    mine.push(((*ep).clone(), self.probe(ep)));
                }
                mine
            };
            // Builder instead of s.spawn: thread creation can fail (limits),
            // and that must not panic; fewer threads just take longer.
            let handles: Vec<_> = (0..workers)
                .map_while(|_| std::thread::Builder::new().spawn_scoped(s, work).ok())
                .collect();
            if handles.is_empty() {
                out.extend(work());
            }
            for h in handles {
                // A panicking probe would be a bug; its endpoints are filled
                // in below instead of taking the whole run down.
                if let Ok(results) = h.join() {
                    out.extend(results);
                }
            }
        });
        for ep in unique {
            out.entry(ep.clone())
                .or_insert_with(|| ProbeResult::not_probed("internal error: probe thread failed"));
        }
        out
    }
}

/// nix's SocketAddr conversions sit behind its `net` feature, which this
/// crate does not enable; build the C struct by hand.
fn sockaddr_of(a: SocketAddr) -> Option<SockaddrStorage> {
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_in is plain old data; all-zero is valid.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: the pointer and length describe `sin`, alive here.
            unsafe { SockaddrStorage::from_raw(&sin as *const _ as *const libc::sockaddr, Some(len)) }
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            // SAFETY: the pointer and length describe `sin6`, alive here.
            unsafe { SockaddrStorage::from_raw(&sin6 as *const _ as *const libc::sockaddr, Some(len)) }
        }
    }
}

/// IP literals directly; `localhost` without a resolver (the usual php-fpm
/// `127.0.0.1:9000`); other names through the system resolver, on a helper
/// thread so a dead DNS server cannot outlast the deadline.
fn resolve_host(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port),
            SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), port),
        ]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = format!("{host}:{port}");
    let lookup = move || {
        let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
    };
    // Detached on purpose: a hung lookup is abandoned at the deadline.
    if let Err(e) = std::thread::Builder::new().spawn(lookup) {
        return Err(format!("{host}: cannot start resolver thread: {e}"));
    }
    match rx.recv_timeout(remaining(deadline)) {
        Ok(Ok(a)) if !a.is_empty() => Ok(a),
        Ok(Ok(_)) => Err(format!("{host}: resolves to no address")),
        Ok(Err(e)) => Err(format!("{host}: cannot resolve: {e}")),
        Err(_) => Err(format!("{host}: name resolution timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_nginx_addresses() {
        assert_eq!(
            Endpoint::parse_nginx("unix:/usr/local/php83/sockets/alice.sock"),
            Some(Endpoint::Unix("/usr/local/php83/sockets/alice.sock".into()))
        );
        assert_eq!(
            Endpoint::parse_nginx("127.0.0.1:9000"),
            Some(Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 9000
            })
        );
        assert_eq!(
            Endpoint::parse_nginx("[::1]:9000"),
            Some(Endpoint::Tcp {
                host: "::1".into(),
                port: 9000
            })
        );
        assert_eq!(
            Endpoint::parse_nginx(" localhost:9001 "),
            Some(Endpoint::Tcp {
                host: "localhost".into(),
                port: 9001
            })
        );
        assert_eq!(
            Endpoint::parse_nginx("\"unix:/a b.sock\""),
            Some(Endpoint::Unix("/a b.sock".into()))
        );
        for bad in [
            "php83",
            "backend_alice",
            "127.0.0.1",
            "unix:",
            "unix:relative.sock",
            "$upstream",
            "unix:/run/$pool.sock",
            "host:0",
            "host:99999",
            "host:",
            "[::1]",
            "[::1]9000",
            "[nothex]:9000",
            "::1:9000",
            "http://x:80",
            "",
        ] {
            assert_eq!(Endpoint::parse_nginx(bad), None, "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["unix:/x.sock", "127.0.0.1:9000", "[::1]:9000", "localhost:9000"] {
            assert_eq!(Endpoint::parse_nginx(s).unwrap().display(), s);
        }
    }

    #[test]
    fn state_strings_match_serde() {
        use SocketState::*;
        for s in [
            Missing,
            NotSocket,
            Refused,
            PermissionDenied,
            Timeout,
            Busy,
            NotFastcgi,
            Listening,
            NotProbed,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
            assert_eq!(s.is_live(), s == Listening);
        }
    }

    #[test]
    fn get_values_request_is_well_formed() {
        let r = get_values_request();
        assert_eq!(&r[..4], &[1, 9, 0, 0]);
        let len = u16::from_be_bytes([r[4], r[5]]) as usize;
        assert_eq!(r.len(), 8 + len + r[6] as usize);
        assert_eq!(r.len() % 8, 0);
        assert_eq!(&r[8..10], &[14, 0]);
        assert_eq!(&r[10..24], b"FCGI_MAX_CONNS");
    }

    #[test]
    fn parses_name_value_pairs() {
        // What php-fpm 8.2 sends, then a 4-byte-length pair and garbage.
        let v = parse_values(b"\x0f\x01FCGI_MPXS_CONNS0");
        assert_eq!(
            v,
            FcgiValues {
                max_conns: None,
                max_reqs: None,
                mpxs_conns: Some(0)
            }
        );
        let mut body = vec![0x80, 0, 0, 14, 2];
        body.extend_from_slice(b"FCGI_MAX_CONNS50");
        body.extend_from_slice(b"\x0d\x01FCGI_MAX_REQSx"); // not a number
        body.extend_from_slice(b"\x05\x7fshort"); // truncated
        let v = parse_values(&body);
        assert_eq!((v.max_conns, v.max_reqs, v.mpxs_conns), (Some(50), None, None));
        assert_eq!(parse_values(&[]), FcgiValues::default());
        assert_eq!(parse_values(&[0x80, 0]), FcgiValues::default());
    }

    #[test]
    fn judges_records() {
        assert_eq!(judge_record(10, b"", b"").state, SocketState::Listening);
        assert_eq!(
            judge_record(11, &[9, 0, 0, 0, 0, 0, 0, 0], b"").state,
            SocketState::Listening
        );
        assert_eq!(judge_record(6, b"x", b"").state, SocketState::NotFastcgi);
    }

    #[test]
    fn mode_strings() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4751)).unwrap();
        assert_eq!(mode_string(&std::fs::metadata(&f).unwrap()), "-rwsr-x--x");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1700)).unwrap();
        assert_eq!(mode_string(&std::fs::metadata(d.path()).unwrap()), "drwx-----T");
    }
}
