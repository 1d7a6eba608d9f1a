//! Repairs: scan a scope, turn findings into plans (`plan`, pure), and hand
//! the chosen plans to `apply`, the only writer, with a verify step that
//! re-scans the touched domains and connects to their sockets.

pub mod plan;

use crate::apply::{self, ApplyOptions, ApplyReport, Outcome, Plan, Safety};
use crate::checks::{self, socket_drift, Finding, Severity};
use crate::config::Config;
use crate::readers::Scope;
use crate::scan;
use serde::Serialize;

/// A finding with the plan that fixes it.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub finding: Finding,
    pub plan: Plan,
}

impl Planned {
    /// A stable id for the plan's content: the same fix proposed again gets
    /// the same id, so a confirmation form can name plans and be checked
    /// against a fresh `propose`.
    pub fn id(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(&self.plan).unwrap_or_default();
        let h = Sha256::digest(&json);
        h.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// What a repair run found to do.
#[derive(Debug, Serialize)]
pub struct Proposal {
    pub planned: Vec<Planned>,
    /// Unified diff of every plan that writes.
    pub diff: String,
}

impl Proposal {
    /// Plans at or below `max` safety (`Safe` ⇒ only safe ones), with edits or a rewrite.
    pub fn selected(&self, max: Safety) -> Vec<&Planned> {
        self.planned
            .iter()
            .filter(|p| p.plan.safety != Safety::Manual)
            .filter(|p| max == Safety::Confirm || p.plan.safety == Safety::Safe)
            .collect()
    }

    /// Keeps only the plans for findings of the checks in `only`, and
    /// recomputes the diff.
    pub fn retain_checks(&mut self, cfg: &Config, only: &[String]) {
        if only.is_empty() {
            return;
        }
        self.planned.retain(|p| only.iter().any(|c| c == p.finding.check));
        let writing: Vec<Plan> = self
            .planned
            .iter()
            .filter(|p| !p.plan.edits.is_empty())
            .map(|p| p.plan.clone())
            .collect();
        self.diff = apply::diff(cfg, &writing);
    }

    pub fn manual(&self) -> Vec<&Planned> {
        self.planned
            .iter()
            .filter(|p| p.plan.safety == Safety::Manual)
            .collect()
    }
}

/// Scans `scope` and proposes a plan per actionable finding.
pub fn propose(cfg: &Config, scope: &Scope) -> Result<Proposal, String> {
    let server = scan::gather(cfg, scope)?;
    let analysis = checks::analyse(&server);
    let mut planned = Vec::new();
    let mut seen: Vec<Plan> = Vec::new();
    let mut all_users: Option<Vec<String>> = None;
    for f in analysis.findings {
        if let Some(mut p) = plan::plan_for_check(&server, cfg, &f) {
            if f.layer == Some("template") && !p.edits.is_empty() {
                // A custom template is rendered for every user, not only the
                // ones in this (possibly --domain) scope: DA must rewrite all
                // of them, or the others keep the old socket until the next
                // full rebuild.
                if all_users.is_none() {
                    all_users = Some(crate::readers::da::list_users(
                        &crate::readers::Fs::new(cfg),
                        None,
                    )?);
                }
                let mut users = all_users.clone().unwrap_or_default();
                users.sort();
                p.rewrite_users = users;
            }
            // One edit fixes every domain that text serves (a .cust_nginx
            // inlined into the domain's subdomains too): plan it once.
            let dup = seen.iter().any(|o| {
                if p.edits.is_empty() {
                    o.edits.is_empty()
                        && o.rewrite_users == p.rewrite_users
                        && o.advice == p.advice
                        && o.actions == p.actions
                } else {
                    o.edits == p.edits
                }
            });
            if dup {
                continue;
            }
            seen.push(p.clone());
            planned.push(Planned { finding: f, plan: p });
        }
    }
    let writing: Vec<Plan> = planned
        .iter()
        .filter(|p| !p.plan.edits.is_empty())
        .map(|p| p.plan.clone())
        .collect();
    let diff = apply::diff(cfg, &writing);
    Ok(Proposal { planned, diff })
}

/// Users whose domains a set of planned fixes touches: the verify scope.
fn touched_users(planned: &[&Planned], cfg: &Config) -> Vec<Option<String>> {
    let mut users: Vec<Option<String>> = Vec::new();
    for p in planned {
        let u = p.finding.user.clone();
        if u.is_none() || p.finding.domain.is_none() {
            // A server-wide layer: verify the whole server.
            return vec![None];
        }
        if !users.contains(&u) {
            users.push(u);
        }
    }
    let _ = cfg;
    users
}

/// After a restart: the version must come back (FPM may take a moment to
/// bind its sockets, so the scan is retried for a few seconds).
fn verify_fpm_up(cfg: &Config, p: &Planned) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = scan::scan_only(cfg, &Scope::default(), Some(&[checks::fpm_down::ID.to_string()]))?;
        let still = report.findings.into_iter().find(|f| {
            f.check == checks::fpm_down::ID && f.severity == Severity::Critical && f.file == p.finding.file
        });
        match still {
            None => return Ok(()),
            Some(f) if std::time::Instant::now() >= deadline => {
                return Err(format!("PHP-FPM is still down after the restart: {}", f.message))
            }
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
        }
    }
}

/// Re-scans the touched users; fails when a finding that was fixed is still there.
/// DA's queue is asynchronous: until its rewrite has run, the generated files
/// still hold the old text. Re-check until the fix shows or the wait
/// (`commands.rewrite_wait_secs`) is over, so a good repair is not rolled back.
fn verify(cfg: &Config, planned: &[&Planned]) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(cfg.commands.rewrite_wait_secs);
    loop {
        match verify_once(cfg, planned) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    }
}

fn verify_once(cfg: &Config, planned: &[&Planned]) -> Result<(), String> {
    for p in planned.iter().filter(|p| !p.plan.actions.is_empty()) {
        verify_fpm_up(cfg, p)?;
    }
    let planned: Vec<&Planned> = planned
        .iter()
        .copied()
        .filter(|p| p.plan.actions.is_empty())
        .collect();
    let planned = &planned[..];
    if planned.is_empty() {
        return Ok(());
    }
    for u in touched_users(planned, cfg) {
        let report = scan::scan(
            cfg,
            &Scope {
                user: u.clone(),
                domain: None,
            },
        )?;
        for p in planned {
            let still = report.findings.iter().find(|f| {
                f.check == socket_drift::ID
                    && f.severity >= Severity::Warning
                    && f.file == p.finding.file
                    && f.line == p.finding.line
                    && f.socket == p.finding.socket
            });
            if let Some(f) = still {
                return Err(format!(
                    "after the repair the scan still reports {} at {}:{}: {}",
                    f.socket.as_deref().unwrap_or("?"),
                    f.file.as_deref().unwrap_or("?"),
                    f.line.unwrap_or(0),
                    f.message
                ));
            }
            // The domain must now reach a live socket.
            if let Some(d) = &p.finding.domain {
                if let Some(f) = report.findings.iter().find(|f| {
                    f.check == socket_drift::ID
                        && f.severity == Severity::Critical
                        && f.domain.as_deref() == Some(d)
                }) {
                    return Err(format!(
                        "{d} still has a dead PHP handler after the repair: {}",
                        f.message
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Applies the given plans through the apply protocol, verifying with a re-scan.
pub fn execute(cfg: &Config, planned: &[&Planned], fault: Option<String>) -> ApplyReport {
    let plans: Vec<Plan> = planned.iter().map(|p| p.plan.clone()).collect();
    let check = |c: &Config| verify(c, planned);
    let opts = ApplyOptions {
        verify: Some(&check),
        fault,
    };
    apply::apply(cfg, &plans, &opts)
}

/// Nagios-style exit code for an apply outcome.
pub fn exit_code(r: &ApplyReport) -> i32 {
    match r.outcome {
        Outcome::Ok => 0,
        Outcome::Refused => 1,
        Outcome::RolledBack => 2,
        Outcome::Failed => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim;

    /// A custom template serves every user: a repair asked for one domain
    /// must still have DA rewrite every user.
    #[test]
    fn template_repair_in_a_domain_scope_rewrites_every_user() {
        let t = tempfile::tempdir().unwrap();
        let mut s = sim::SimServer::drift_demo();
        s.users[1].domains[0].cust_nginx = None;
        sim::write_tree(t.path(), &s).unwrap();
        let tpl = t
            .path()
            .join("usr/local/directadmin/data/templates/custom/nginx_php.conf");
        std::fs::create_dir_all(tpl.parent().unwrap()).unwrap();
        std::fs::write(
            &tpl,
            "\tlocation ~ \\.php$ {\n\t\tfastcgi_pass unix:/usr/local/php82/sockets/|USER|.sock;\n\t}\n",
        )
        .unwrap();
        sim::upgrade_php(t.path(), 1, "8.3").unwrap();
        let cfg = Config::load(None, Some(t.path())).unwrap();
        let scope = Scope {
            user: None,
            domain: Some("alice.test".into()),
        };
        let p = propose(&cfg, &scope).unwrap();
        let tp: Vec<&Planned> = p
            .planned
            .iter()
            .filter(|p| p.finding.layer == Some("template"))
            .collect();
        assert_eq!(tp.len(), 1, "{:#?}", p.planned);
        assert_eq!(tp[0].plan.rewrite_users, ["admin", "alice", "bob"]);
    }
}
