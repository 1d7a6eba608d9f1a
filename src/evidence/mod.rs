//! Evidence beyond the configs: logs, processes, kernel, system state. Like
//! the readers, everything here does IO and judges nothing; checks read the
//! result from `Server::evidence`.

pub mod fpm;
pub mod logread;
pub mod nginx_log;

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
    Evidence {
        since,
        now,
        nginx,
        fpm,
    }
}
