//! Evidence beyond the configs: logs, processes, kernel, system state. Like
//! the readers, everything here does IO and judges nothing; checks read the
//! result from `Server::evidence`.

pub mod cmd;
pub mod disk;
pub mod firewall;
pub mod fpm;
pub mod kernel;
pub mod logread;
pub mod mysql;
pub mod nginx_log;
pub mod php;
pub mod upstream;

use crate::config::Config;
use crate::model::Server;
use crate::readers::Fs;
use serde::Serialize;

/// Everything collected for the 502 checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    /// Unix time the window starts (lines before it are ignored).
    pub since: i64,
    pub now: i64,
    /// nginx error and access logs; `None` when nginx does not serve PHP here.
    pub nginx: Option<nginx_log::NginxLogs>,
    /// PHP-FPM masters, workers, memory and logs; `None` when not collected.
    pub fpm: Option<fpm::FpmEvidence>,
    /// Kernel OOM kills; `None` when not collected.
    pub kernel: Option<kernel::KernelLog>,
    /// Filesystem usage; `None` when not measured (offline copy).
    pub disks: Option<disk::Disks>,
    /// Ini files and modules of each PHP-FPM slot; `None` when not collected.
    pub php: Option<Vec<php::SlotPhp>>,
    /// MySQL processlist and lock waits (`mysql-stall`); `None` = not collected.
    pub mysql: Option<mysql::MysqlEvidence>,
    /// Bans of loopback / own IPs (`loopback-banned`).
    pub firewall: Option<firewall::FirewallEvidence>,
    /// Apache behind nginx (`apache-upstream`): one probe per proxy_pass target.
    pub apache: Option<Vec<upstream::HttpProbe>>,
}

/// Runs a read-only tool and returns its stdout, cut at `max_bytes`; a
/// non-zero exit is an error carrying stderr. (One runner: [`cmd::capture`].)
pub fn run_capture(argv: &[String], timeout: std::time::Duration, max_bytes: u64) -> Result<String, String> {
    let prog = argv.first().cloned().unwrap_or_default();
    let c = cmd::capture(argv, timeout)?;
    if !c.ok {
        return Err(format!("{prog} failed: {}", c.stderr.trim()));
    }
    let mut out = c.stdout;
    if out.len() as u64 > max_bytes {
        let mut cut = max_bytes as usize;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    Ok(out)
}

/// A program on PATH (or an absolute path that exists).
fn on_path(prog: &str) -> bool {
    if prog.contains('/') {
        return std::path::Path::new(prog).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// A configured command line: `None` = the default when the root is `/`,
/// "" = off.
fn command(cfg: &Config, setting: &Option<String>, default: &str) -> Option<Vec<String>> {
    let line = match setting {
        Some(s) => s.clone(),
        None if cfg.is_live_root() => default.to_string(),
        None => return None,
    };
    let argv = shell_words::split(&line).ok()?;
    (!argv.is_empty()).then_some(argv)
}

fn collect_kernel(cfg: &Config, fs: &Fs, now: i64, limits: logread::Limits) -> kernel::KernelLog {
    let mut commands = Vec::new();
    if let Some(argv) = command(cfg, &cfg.system.dmesg, "dmesg") {
        commands.push(("dmesg".to_string(), argv));
    }
    if let Some(argv) = command(
        cfg,
        &cfg.system.journalctl,
        "journalctl -k -q --no-pager -o short-unix",
    ) {
        // Only where journald exists: its absence is normal, not unknown.
        if on_path(&argv[0]) {
            let mut argv = argv;
            if let Some(s) = limits.since {
                argv.push(format!("--since=@{s}"));
            }
            commands.push(("journalctl -k".to_string(), argv));
        }
    }
    let src = kernel::KernelSources {
        files: vec![&cfg.paths.kern_log, &cfg.paths.messages_log],
        proc_stat: &cfg.paths.proc_stat,
        commands,
        timeout: std::time::Duration::from_secs(cfg.system.command_timeout_secs.max(1)),
        now,
    };
    kernel::collect(fs, &src, limits)
}

/// The directories PHP and nginx write to, for `disk-full`.
fn disk_paths(cfg: &Config, server: &Server) -> Vec<(String, std::path::PathBuf)> {
    let p = &cfg.paths;
    let mut v: Vec<String> = server
        .php
        .iter()
        .filter(|s| s.is_fpm())
        .map(|s| format!("{}/sockets", s.prefix))
        .collect();
    let dir_of = |f: &str| f.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
    v.push(dir_of(&p.nginx_error_log));
    v.push(p.nginx_domain_log_dir.clone());
    v.push(p.tmp_dir.clone());
    v.push(crate::readers::join(&p.da_dir, "data"));
    v.push(p.state_dir.clone());
    v.dedup();
    v.into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let h = cfg.host(&s);
            (s, h)
        })
        .collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Collects the evidence for the domains in the model.
pub fn collect(cfg: &Config, server: &Server) -> Evidence {
    let fs = Fs::new(cfg);
    let now = now();
    let since = now - (cfg.logs.window_hours as i64) * 3600;
    let limits = logread::Limits {
        max_bytes: cfg.logs.max_bytes,
        since: Some(since),
        rotations: cfg.logs.rotations,
    };
    let nginx_side = matches!(
        server.webserver.as_deref(),
        None | Some("nginx") | Some("nginx_apache")
    );
    let domains: Vec<String> = server
        .users
        .iter()
        .flat_map(|u| u.domains.iter().map(|d| d.name.clone()))
        .collect();
    let nginx = nginx_side.then(|| {
        let paths = nginx_log::LogPaths {
            error_log: &cfg.paths.nginx_error_log,
            domain_dir: &cfg.paths.nginx_domain_log_dir,
        };
        nginx_log::collect(&fs, &paths, &domains, limits)
    });
    // FPM logs carry local time without a zone, like nginx's error log.
    let offset = nginx.as_ref().map(|n| n.utc_offset).unwrap_or(0);
    let fpm = Some(fpm::collect(cfg, server, limits, offset));
    let kernel = Some(collect_kernel(cfg, &fs, now, limits));
    let disks = cfg
        .system
        .statvfs
        .unwrap_or_else(|| cfg.is_live_root())
        .then(|| disk::Disks {
            warn_pct: cfg.system.disk_warn_pct,
            crit_pct: cfg.system.disk_crit_pct,
            min_free_bytes: cfg.system.disk_min_free_mb << 20,
            ..disk::collect(&disk_paths(cfg, server))
        });
    let run_php = cfg.system.run_php_fpm.unwrap_or_else(|| cfg.is_live_root());
    let php = Some(php::collect(
        &fs,
        &server.php,
        run_php,
        std::time::Duration::from_secs(cfg.system.command_timeout_secs.max(1)),
    ));
    let mut targets: Vec<String> = server
        .users
        .iter()
        .flat_map(|u| u.domains.iter().flat_map(|d| d.vhosts.iter()))
        .flat_map(|v| v.proxy_targets.iter().filter_map(|p| upstream::target_of(p)))
        .collect();
    targets.sort();
    targets.dedup();
    let apache =
        (server.webserver.as_deref() == Some("nginx_apache")).then(|| upstream::probe(cfg, &targets));
    Evidence {
        since,
        now,
        nginx,
        fpm,
        kernel,
        disks,
        php,
        mysql: Some(mysql::collect(cfg)),
        firewall: Some(firewall::collect(cfg)),
        apache,
    }
}
