//! The local web face in a real browser: headless Debian chromium against
//! `fpm-doctor demo --serve`. Pages are loaded with `--dump-dom` (the DOM
//! after the page ran) and `--screenshot`; the confirming form POST is sent
//! with a plain HTTP client holding its own session cookie, as a browser
//! would. Screenshots land in tests/artifacts/ (gitignored) for a human to look at.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fpm-doctor");

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange; returns (status, headers, body).
fn http(port: u16, method: &str, path: &str, cookie: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nCookie: {cookie}\r\n"
    );
    if method == "POST" {
        req.push_str(&format!(
            "Origin: http://127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn start(tree: &Path) -> Server {
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "demo",
            "--serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--keep",
        ])
        .arg(tree)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let srv = Server { child, port };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "demo server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    srv
}

fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return c.into();
        }
    }
    panic!("chromium is not installed: run ./build.sh test (it installs Debian's chromium)");
}

struct Browser {
    exe: PathBuf,
    profile: tempfile::TempDir,
    artifacts: PathBuf,
}

impl Browser {
    fn run(&self, extra: &[&str], url: &str) -> String {
        let out = Command::new(&self.exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn dom(&self, url: &str) -> String {
        self.run(&["--dump-dom"], url)
    }

    fn shot(&self, name: &str, url: &str) {
        let p = self.artifacts.join(name);
        let _ = std::fs::remove_file(&p);
        self.run(&[&format!("--screenshot={}", p.display())], url);
        assert!(p.exists(), "no screenshot {}", p.display());
    }
}

fn capture(html: &str, re: &str) -> Vec<String> {
    regex::Regex::new(re)
        .unwrap()
        .captures_iter(html)
        .map(|c| c[1].to_string())
        .collect()
}

#[test]
fn admin_repairs_a_drifted_domain_in_the_browser() {
    let exe = chromium();
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    let srv = start(&tree);
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let b = Browser {
        exe,
        profile: tempfile::tempdir().unwrap(),
        artifacts: artifacts.clone(),
    };
    let base = format!("http://127.0.0.1:{}", srv.port);

    // The admin overview: the drifted domains with their evidence.
    let url = format!("{base}/admin/index.html?as=admin");
    let dom = b.dom(&url);
    assert!(dom.contains("DEMO"), "labelled demo");
    assert!(dom.contains("alice-shop.test.cust_nginx:6"), "{dom}");
    assert!(dom.contains("st-drift"));
    b.shot("1-admin-index.png", &url);

    // A drifted domain.
    let url = format!("{base}/admin/domain.html?as=admin&domain=alice-shop.test");
    let dom = b.dom(&url);
    assert!(dom.contains("Preview the repair"), "{dom}");
    b.shot("2-domain-drifted.png", &url);

    // The diff preview, before anything is written.
    let url = format!("{base}/admin/repair.html?as=admin&domain=alice-shop.test");
    let dom = b.dom(&url);
    assert!(
        dom.contains("+    fastcgi_pass unix:/usr/local/php83/sockets/|USER|.sock;"),
        "{dom}"
    );
    b.shot("3-repair-preview.png", &url);
    let cust = tree.join("usr/local/directadmin/data/users/alice/domains/alice-shop.test.cust_nginx");
    assert!(
        std::fs::read_to_string(&cust).unwrap().contains("php82"),
        "a GET wrote nothing"
    );

    // Confirm: the form POST, from a client with its own session cookie.
    let cookie = "fpmd_session=0123456789abcdef0123456789abcdef; fpmd_as=admin";
    let (st, _, preview) = http(
        srv.port,
        "GET",
        "/admin/repair.html?domain=alice-shop.test",
        cookie,
        "",
    );
    assert_eq!(st, 200);
    let tok = capture(&preview, r#"name="csrf" value="([0-9a-f]{64})""#).remove(0);
    let plans = capture(&preview, r#"name="plan" value="([0-9a-f]+)" id="[^"]+" checked"#);
    assert_eq!(plans.len(), 1, "{preview}");
    let body = format!("csrf={tok}&domain=alice-shop.test&plan={}", plans[0]);
    let (st, _, applied) = http(srv.port, "POST", "/admin/repair.html", cookie, &body);
    assert_eq!(st, 200, "{applied}");
    assert!(applied.contains("id=\"fpmd-outcome\">done"), "{applied}");
    assert!(std::fs::read_to_string(&cust).unwrap().contains("php83"));
    // Show the result page as the browser would.
    let result = artifacts.join("4-applied.html");
    std::fs::write(&result, &applied).unwrap();
    b.shot("4-applied.png", &format!("file://{}", result.display()));

    // Healthy now.
    let url = format!("{base}/admin/domain.html?as=admin&domain=alice-shop.test");
    let dom = b.dom(&url);
    assert!(dom.contains("id=\"fpmd-healthy\""), "{dom}");
    b.shot("5-domain-healthy.png", &url);

    // A user sees only their own domains.
    let url = format!("{base}/user/index.html?as=bob");
    let dom = b.dom(&url);
    assert!(
        dom.contains("bob-news.test") && dom.contains("bob-wiki.test"),
        "{dom}"
    );
    // (The demo banner's identity switch names everyone; the page itself must not.)
    let page = dom.split("<div class=\"fpmd\">").nth(1).expect("the fragment");
    assert!(!page.contains("alice") && !page.contains("carol"), "{page}");
    b.shot("6-user-bob.png", &url);

    // Outside the served origin, a POST is refused (Host/Origin check).
    let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    write!(
        s,
        "POST /admin/repair.html HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: http://evil.test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        srv.port
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
}
