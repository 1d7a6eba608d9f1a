//! Running a read-only tool (mysql client, fail2ban-client, iptables-save,
//! nft) for evidence: an argument list (no shell), minimal environment,
//! stdin from /dev/null, own process group, killed after a timeout. Unlike
//! `apply::commands::run` the whole stdout is kept (capped): it is parsed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Output beyond this is cut (a processlist of thousands of rows is plenty).
const MAX_OUT: usize = 8 << 20;

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Captured {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(r) = r {
            let _ = r.take(MAX_OUT as u64).read_to_end(&mut out);
        }
        out
    })
}

/// Runs `argv`; `Err` when it cannot start or times out.
pub fn capture(argv: &[String], timeout: Duration) -> Result<Captured, String> {
    let prog = argv.first().ok_or("empty command")?;
    let mut child = crate::apply::commands::sandboxed(argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if started.elapsed() >= timeout => {
                // SAFETY: kill(2) of the process group we created.
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                return Err(format!("{prog} timed out after {}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("{prog}: wait: {e}")),
        }
    };
    let text = |h: std::thread::JoinHandle<Vec<u8>>| {
        String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned()
    };
    Ok(Captured {
        ok: status.success(),
        stdout: text(out),
        stderr: text(err),
    })
}

/// A configured command line split into arguments, `{key}` substituted per argument.
pub fn argv(line: &str, subst: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let mut a = crate::apply::commands::split(line)?;
    for x in a.iter_mut() {
        for (k, v) in subst {
            *x = x.replace(&format!("{{{k}}}"), v);
        }
    }
    Ok(a)
}

/// Full path of the first of `names` found in the safe PATH or /usr/local/bin.
pub fn find_in_path(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        crate::apply::commands::SAFE_PATH
            .split(':')
            .chain(["/usr/local/bin"])
            .map(|d| std::path::Path::new(d).join(n))
            .find(|p| p.is_file())
            .map(|p| p.to_string_lossy().into_owned())
    })
}
