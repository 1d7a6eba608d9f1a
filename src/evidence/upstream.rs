//! Apache behind nginx (`apache-upstream`): a TCP connect to each distinct
//! `proxy_pass` target, then a minimal `HEAD /` to see that an HTTP server
//! answers. Bounded by the probe timeout; off under `--root` unless
//! `[probe] tcp = true` (an offline copy's 127.0.0.1 is not this machine's).

use crate::config::Config;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpProbe {
    /// `host:port` as the vhosts name it.
    pub target: String,
    /// `answers|refused|timeout|error|not_probed`
    pub state: &'static str,
    pub detail: String,
    /// First line of the answer to `HEAD /`.
    pub status_line: Option<String>,
}

/// `http://1.2.3.4:8080/path` → `1.2.3.4:8080` (port 80/443 by scheme).
pub fn target_of(proxy_pass: &str) -> Option<String> {
    let (scheme, rest) = proxy_pass.split_once("://")?;
    let hostport = rest.split('/').next()?;
    if hostport.is_empty() || hostport.contains('$') {
        return None;
    }
    let has_port = hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        && !hostport.ends_with(']');
    Some(if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", if scheme == "https" { 443 } else { 80 })
    })
}

fn probe_one(target: &str, timeout: Duration) -> HttpProbe {
    let mut p = HttpProbe {
        target: target.to_string(),
        state: "error",
        detail: String::new(),
        status_line: None,
    };
    let addr: SocketAddr = match target.to_socket_addrs().ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => {
            p.detail = format!("cannot resolve {target}");
            return p;
        }
    };
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            p.state = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "refused",
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout",
                _ => "error",
            };
            p.detail = format!("connect() to {addr}: {e}");
            return p;
        }
    };
    p.state = "answers";
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let req = format!(
        "HEAD / HTTP/1.0\r\nHost: {}\r\nUser-Agent: fpm-doctor\r\n\r\n",
        addr.ip()
    );
    let mut buf = [0u8; 512];
    match s.write_all(req.as_bytes()).and_then(|_| s.read(&mut buf)) {
        Ok(n) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]);
            p.status_line = text.lines().next().map(|l| l.trim().to_string());
            p.detail = format!("connected to {addr}");
        }
        Ok(_) => p.detail = format!("connected to {addr}, but it closed without an answer"),
        Err(e) => p.detail = format!("connected to {addr}, no HTTP answer: {e}"),
    }
    p
}

/// Probes each target once (in parallel).
pub fn probe(cfg: &Config, targets: &[String]) -> Vec<HttpProbe> {
    if cfg.no_probe || !cfg.probe_tcp() {
        return targets
            .iter()
            .map(|t| HttpProbe {
                target: t.clone(),
                state: "not_probed",
                detail: "TCP probes are off (--root without [probe] tcp = true, or --no-probe)".into(),
                status_line: None,
            })
            .collect();
    }
    let timeout = cfg.probe_timeout();
    std::thread::scope(|s| {
        let hs: Vec<_> = targets
            .iter()
            .map(|t| s.spawn(move || probe_one(t, timeout)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("probe thread")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_from_proxy_pass() {
        assert_eq!(target_of("http://1.2.3.4:8080").as_deref(), Some("1.2.3.4:8080"));
        assert_eq!(
            target_of("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(target_of("https://[::1]").as_deref(), Some("[::1]:443"));
        assert_eq!(target_of("http://backend").as_deref(), Some("backend:80"));
        assert_eq!(target_of("http://$host:8080"), None);
    }

    #[test]
    fn refused_and_answering_ports() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 256];
            let _ = c.read(&mut b);
            c.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        });
        let p = probe_one(&format!("127.0.0.1:{port}"), Duration::from_secs(2));
        t.join().unwrap();
        assert_eq!(p.state, "answers");
        assert_eq!(p.status_line.as_deref(), Some("HTTP/1.1 200 OK"));
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            probe_one(&format!("127.0.0.1:{free}"), Duration::from_secs(2)).state,
            "refused"
        );
    }
}
