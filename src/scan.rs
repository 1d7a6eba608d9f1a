//! One scan: read the model, probe every endpoint once, run the checks.
//! This is the core every face (CLI, pages, hooks) calls.

use crate::accounts::Accounts;
use crate::checks::{self, socket_drift::DomainStatus, Finding};
use crate::config::Config;
use crate::model::{expected_socket, expected_webapps_socket, pool_endpoint, PhpSlot, Server};
use crate::probe::{Endpoint, Prober, WorkerIdentity};
use crate::readers::{self, Fs, Scope};
use serde::Serialize;

/// The result of a scan; its JSON form is the `schema: 1` contract.
#[derive(Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub verdict: &'static str,
    pub webserver: Option<String>,
    pub php: Vec<PhpSlot>,
    pub domains: Vec<DomainStatus>,
    pub findings: Vec<Finding>,
    /// Every check run and its state (`ok|finding|unknown|not_applicable`).
    pub checks: Vec<checks::CheckStatus>,
    /// The most likely cause of the 502s, with its evidence.
    pub primary_cause: Option<checks::PrimaryCause>,
    /// Who nginx runs as (judged against socket permissions).
    pub nginx_worker: Option<String>,
    pub probed: bool,
    pub users: usize,
    /// Whether each PHP-FPM slot answers, judged from the probes of the
    /// sockets under its prefix (the pages' server summary).
    pub fpm: Vec<FpmState>,
}

/// One PHP slot's FPM as the probes saw it.
#[derive(Debug, Clone, Serialize)]
pub struct FpmState {
    pub slot: u8,
    pub release: String,
    /// `alive` (a socket of this version answered), `down` (its sockets
    /// were probed and none answered), `unknown` (none probed).
    pub state: &'static str,
    pub listening: usize,
    pub failing: usize,
}

/// Per enabled FPM slot: how many of its sockets answered the handshake.
fn fpm_states(server: &Server) -> Vec<FpmState> {
    use crate::probe::SocketState;
    server
        .php
        .iter()
        .filter(|s| s.is_fpm())
        .map(|s| {
            let dir = format!("{}/sockets/", s.prefix);
            let (mut listening, mut failing) = (0, 0);
            for (ep, r) in &server.probes {
                match ep {
                    Endpoint::Unix(p) if p.starts_with(&dir) => match r.state {
                        SocketState::Listening => listening += 1,
                        SocketState::NotProbed => {}
                        _ => failing += 1,
                    },
                    _ => {}
                }
            }
            let state = match (listening, failing) {
                (0, 0) => "unknown",
                (0, _) => "down",
                _ => "alive",
            };
            FpmState {
                slot: s.slot,
                release: s.release.clone(),
                state,
                listening,
                failing,
            }
        })
        .collect()
}

impl Report {
    pub fn exit_code(&self) -> i32 {
        checks::exit_code(self.verdict)
    }
}

/// The nginx worker's identity from the tree's own passwd/group files.
fn worker_identity(cfg: &Config, server: &Server) -> Option<WorkerIdentity> {
    let name = cfg
        .probe
        .worker_user
        .clone()
        .or_else(|| server.nginx_worker_user.clone())
        .unwrap_or_else(|| "nginx".into());
    let fs = Fs::new(cfg);
    let passwd = fs.read(&cfg.paths.passwd).ok().flatten()?;
    let group = fs.read(&cfg.paths.group).ok().flatten().unwrap_or_default();
    let acc = Accounts::parse(&passwd, &group);
    let a = acc.user(&name)?;
    Some(WorkerIdentity {
        name: name.clone(),
        uid: a.uid,
        gids: acc.gids_of(&name),
    })
}

/// Probes every handler endpoint, every expected socket and every FPM pool
/// `listen` of a configured version, once each.
pub fn probe(cfg: &Config, server: &mut Server) {
    let fs = Fs::new(cfg);
    if let (Ok(Some(p)), g) = (fs.read(&cfg.paths.passwd), fs.read(&cfg.paths.group)) {
        server.accounts = Some(Accounts::parse(&p, &g.ok().flatten().unwrap_or_default()));
    }
    server.worker = worker_identity(cfg, server);
    if cfg.no_probe {
        return;
    }
    let mut eps = server.endpoints();
    let mut versions: Vec<String> = server
        .php
        .iter()
        .filter(|s| s.is_fpm())
        .map(|s| s.release.replace('.', ""))
        .collect();
    versions.sort();
    versions.dedup();
    for v in &versions {
        for r in server.fpm_pools(v) {
            if let Some(ep) = r.pool.listen.as_deref().and_then(pool_endpoint) {
                eps.push(ep);
            }
        }
    }
    for u in &server.users {
        for d in &u.domains {
            if let Some(s) = expected_socket(&server.php, &u.pools, &u.name, d.php_select).socket {
                eps.push(Endpoint::Unix(s));
            }
        }
    }
    if let Some(w) = expected_webapps_socket(&server.php) {
        eps.push(Endpoint::Unix(w));
    }
    eps.sort();
    eps.dedup();
    let prober = Prober::from_config(cfg, server.worker.clone());
    server.probes = prober.probe_all(&eps);
}

/// Reads, probes and analyses.
pub fn scan(cfg: &Config, scope: &Scope) -> Result<Report, String> {
    scan_only(cfg, scope, None)
}

/// Like [`scan`], running only the checks named in `only`.
pub fn scan_only(cfg: &Config, scope: &Scope, only: Option<&[String]>) -> Result<Report, String> {
    let server = gather(cfg, scope)?;
    Ok(report_only(cfg, &server, only))
}

/// Reads the model, collects the evidence (the FPM master configs name
/// pools to probe), then probes.
pub fn gather(cfg: &Config, scope: &Scope) -> Result<Server, String> {
    let mut server = readers::read_server(cfg, scope)?;
    server.evidence = crate::evidence::collect(cfg, &server);
    probe(cfg, &mut server);
    Ok(server)
}

/// Pure: model → report.
pub fn report(cfg: &Config, server: &Server) -> Report {
    report_only(cfg, server, None)
}

fn report_only(cfg: &Config, server: &Server, only: Option<&[String]>) -> Report {
    let analysis = checks::analyse_only(server, only);
    Report {
        schema: 1,
        verdict: checks::verdict(&analysis.findings),
        webserver: server.webserver.clone(),
        php: server.php.clone(),
        domains: analysis.domains,
        findings: analysis.findings,
        checks: analysis.checks,
        primary_cause: analysis.primary_cause,
        nginx_worker: cfg
            .probe
            .worker_user
            .clone()
            .or_else(|| server.nginx_worker_user.clone()),
        probed: !cfg.no_probe,
        users: server.users.len(),
        fpm: fpm_states(server),
    }
}
