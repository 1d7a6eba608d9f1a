//! Evidence beyond the configs: logs, processes, kernel, system state. Like
//! the readers, everything here does IO and judges nothing; checks read the
//! result from `Server::evidence`.

pub mod cmd;
pub mod firewall;
pub mod logread;
pub mod mysql;
pub mod nginx_log;
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
    /// MySQL processlist and lock waits (`mysql-stall`); `None` = not collected.
    pub mysql: Option<mysql::MysqlEvidence>,
    /// Bans of loopback / own IPs (`loopback-banned`).
    pub firewall: Option<firewall::FirewallEvidence>,
    /// Apache behind nginx (`apache-upstream`): one probe per proxy_pass target.
    pub apache: Option<Vec<upstream::HttpProbe>>,
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
        mysql: Some(mysql::collect(cfg)),
        firewall: Some(firewall::collect(cfg)),
        apache,
    }
}
