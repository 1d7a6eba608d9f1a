//! `fpm-doctor` command line: a thin face over the core (see ARCHITECTURE.md).

use clap::{Args, Parser, Subcommand};
use fpm_doctor::config::Config;
use fpm_doctor::readers::Scope;
use fpm_doctor::{checks, report, scan};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fpm-doctor",
    version,
    about = "Finds why PHP sites on NGINX + PHP-FPM answer 502 on DirectAdmin servers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML config overriding DirectAdmin's default paths.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// See DIR as `/` for every path read or probed (an offline copy of a server).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Scan vhosts for PHP handlers pointing at gone or dead PHP-FPM sockets.
    Scan {
        #[command(flatten)]
        common: Common,
        /// Only this DirectAdmin user (reads only their files).
        #[arg(long)]
        user: Option<String>,
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
        /// Print the JSON report (schema 1).
        #[arg(long)]
        json: bool,
        /// Do not touch sockets: report `not_probed` (for a copied tree).
        #[arg(long)]
        no_probe: bool,
        /// List healthy domains too.
        #[arg(long, short)]
        verbose: bool,
        /// Run only these checks (repeatable), e.g. --check socket-drift.
        #[arg(long = "check", value_name = "ID")]
        checks: Vec<String>,
    },
    /// Plan and apply repairs for socket drift, in layers that survive a rebuild.
    Repair {
        #[command(flatten)]
        common: Common,
        /// Repair this domain.
        #[arg(long, conflicts_with_all = ["user", "all"])]
        domain: Option<String>,
        /// Repair every domain of this user.
        #[arg(long, conflicts_with = "all")]
        user: Option<String>,
        /// Repair the whole server.
        #[arg(long)]
        all: bool,
        /// Show the plans and the diff; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply without asking (plans marked `safe` and `confirm`).
        #[arg(long)]
        yes: bool,
        /// Only plans marked `safe` (what the CustomBuild hook applies).
        #[arg(long)]
        safe_only: bool,
        /// Only plans for findings of these checks (repeatable), e.g. --check socket-drift.
        #[arg(long = "check", value_name = "ID")]
        checks: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List past repairs (newest last).
    History {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        json: bool,
    },
    /// Undo a repair: restores the exact previous bytes if the files still hold what it wrote.
    Undo {
        #[command(flatten)]
        common: Common,
        repair_id: String,
        #[arg(long)]
        json: bool,
    },
    /// What the CustomBuild and DirectAdmin hooks run (see README).
    Hook {
        #[command(subcommand)]
        which: HookCmd,
    },
    /// Print who the process runs as (real/effective uid, caller class, kept environment).
    #[command(hide = true)]
    Whoami,
    /// Run the DirectAdmin rewrite emulator on a simulated tree (tests, demo).
    #[command(hide = true)]
    SimRewrite {
        dir: PathBuf,
        /// Only this user's files, like DA's `action=rewrite&value=httpd&user=U`.
        #[arg(long)]
        user: Option<String>,
    },
    /// Show the documentation of a check.
    Explain {
        /// Check id, e.g. socket-drift; omit to list them.
        id: Option<String>,
    },
    /// Build a realistic DirectAdmin demo tree in a temp dir, scan it and print the report.
    Demo {
        /// Keep the tree in this directory instead of a temp dir.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Serve the plugin pages on the demo tree (admin, reseller and user
        /// views; repairs really edit the demo files).
        #[arg(long)]
        serve: bool,
        /// Address for --serve.
        #[arg(long, default_value = fpm_doctor::web::serve::DEFAULT_BIND)]
        bind: std::net::SocketAddr,
    },
    /// One DirectAdmin plugin page (what the admin/, reseller/, user/ wrappers run).
    Cgi {
        #[command(flatten)]
        common: Common,
        /// The level of the wrapper's folder.
        #[arg(long, value_parser = ["admin", "reseller", "user"])]
        level: String,
        /// Page name: index.html, domain.html, repair.html, history.html, status.raw, scan.raw.
        #[arg(long, default_value = "index.html")]
        page: String,
        /// Print a whole HTTP response (implied by a .raw page).
        #[arg(long)]
        raw: bool,
    },
    /// The plugin pages as a local web server (token-protected; see README).
    Serve {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = fpm_doctor::web::serve::DEFAULT_BIND)]
        bind: std::net::SocketAddr,
    },
    /// The pages' detached background scan: writes <state_dir>/snapshot.json.
    #[command(hide = true)]
    WebSnapshot {
        #[command(flatten)]
        common: Common,
    },
    /// Generate a large DA-shaped tree (for benchmarks).
    #[command(hide = true)]
    GenTree {
        dir: PathBuf,
        #[arg(long, default_value_t = 2000)]
        users: usize,
        #[arg(long, default_value_t = 5)]
        domains: usize,
        #[arg(long, default_value_t = 10)]
        drift_every: usize,
    },
}

#[derive(Subcommand)]
enum HookCmd {
    /// After a PHP build: scan, write <state_dir>/last-hook.json, apply safe
    /// plans under `[hook] on_upgrade = "repair-safe"`, notify the admin.
    /// Exits 0 unless its config cannot be loaded.
    CustombuildPost {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        json: bool,
    },
    /// DA wrote a user's web config: queue the user for a re-check and make
    /// sure one drain worker runs.
    UserHttpdWrite {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        user: String,
    },
    /// Re-check every queued user (one worker at a time).
    Drain {
        #[command(flatten)]
        common: Common,
    },
}

impl Common {
    /// The same flags, for a process we start.
    fn args(&self) -> Vec<std::ffi::OsString> {
        let mut a = Vec::new();
        if let Some(c) = &self.config {
            a.push("--config".into());
            a.push(c.clone().into_os_string());
        }
        if let Some(r) = &self.root {
            a.push("--root".into());
            a.push(r.clone().into_os_string());
        }
        a
    }

    fn load(&self) -> Result<Config, String> {
        Config::load(self.config.as_deref(), self.root.as_deref())
    }
}

fn cmd_hook(which: HookCmd) -> Result<i32, String> {
    use fpm_doctor::hooks;
    match which {
        HookCmd::CustombuildPost { common, json } => {
            let cfg = common.load()?;
            let s = hooks::custombuild_post(&cfg);
            if json {
                println!("{}", serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?);
            } else {
                println!(
                    "fpm-doctor hook custombuild-post: verdict {}, {} drifted domain(s){}{}",
                    s.verdict,
                    s.drifted_domains.len(),
                    s.repaired
                        .as_ref()
                        .map(|r| format!(", repair {} {:?}", r.repair_id, r.outcome))
                        .unwrap_or_default(),
                    if s.notified { ", admin notified" } else { "" }
                );
                for e in &s.errors {
                    println!("  error: {}", report::sanitize(e));
                }
            }
            // Never fail the build: problems are in the summary.
            Ok(0)
        }
        HookCmd::UserHttpdWrite { common, user } => {
            let cfg = common.load()?;
            hooks::enqueue_user(&cfg, &user)?;
            let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
            hooks::spawn_drain(&cfg, &exe, &common.args())?;
            Ok(0)
        }
        HookCmd::Drain { common } => {
            let cfg = common.load()?;
            let r = hooks::drain(&cfg);
            for e in &r.errors {
                eprintln!("fpm-doctor hook drain: {}", report::sanitize(e));
            }
            if !r.busy {
                println!(
                    "fpm-doctor hook drain: re-checked {}",
                    report::sanitize(&r.rechecked.join(" "))
                );
            }
            Ok(if r.errors.is_empty() { 0 } else { 1 })
        }
    }
}

fn print_report(r: &scan::Report, json: bool, verbose: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).expect("report serialises"));
    } else {
        print!("{}", report::human(r, std::io::stdout().is_terminal(), verbose));
    }
}

fn print_apply(r: &fpm_doctor::apply::ApplyReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).expect("report serialises"));
        return;
    }
    println!("repair {}: {:?}", r.repair_id, r.outcome);
    for f in &r.files {
        println!("  {:?}  {}", f.state, report::sanitize(&f.file));
    }
    for s in &r.steps {
        println!("  step {}", report::sanitize(&s.summary()));
    }
    if let Some(e) = &r.error {
        println!("  error: {}", report::sanitize(e));
    }
    if let Some(d) = &r.diff {
        print!("{}", report::sanitize_diff(d));
    }
}

/// Asks on a terminal; a closed or non-terminal stdin is a "no", never a hang.
fn confirm(question: &str) -> bool {
    use std::io::{BufRead, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => false,
        Ok(_) => matches!(line.trim(), "y" | "Y" | "yes"),
    }
}

fn cmd_repair(
    cfg: &Config,
    scope: Scope,
    dry_run: bool,
    yes: bool,
    safe_only: bool,
    only: &[String],
    json: bool,
) -> Result<i32, String> {
    use fpm_doctor::apply::Safety;
    use fpm_doctor::repair;
    let mut proposal = repair::propose(cfg, &scope)?;
    proposal.retain_checks(cfg, only);
    let max = if safe_only { Safety::Safe } else { Safety::Confirm };
    let selected = proposal.selected(max);
    if !json {
        if proposal.planned.is_empty() {
            println!("nothing to repair");
        }
        for p in &proposal.planned {
            let chosen = selected.iter().any(|s| std::ptr::eq(*s, p));
            println!(
                "{:?}{} {}",
                p.plan.safety,
                if chosen { "" } else { " (not selected)" },
                report::sanitize(&p.plan.finding)
            );
            if let Some(a) = &p.plan.advice {
                println!("    {}", report::sanitize(a));
            }
            for a in &p.plan.actions {
                println!(
                    "    then runs (cannot be undone): {}",
                    report::sanitize(&a.describe())
                );
            }
            if !p.plan.rewrite_users.is_empty() {
                println!(
                    "    then DirectAdmin rewrites the configs of: {}",
                    report::sanitize(&p.plan.rewrite_users.join(", "))
                );
            }
        }
        print!("{}", report::sanitize_diff(&proposal.diff));
    }
    if dry_run || selected.is_empty() {
        if json {
            let v = serde_json::json!({"outcome": if dry_run { "dry_run" } else { "nothing_to_do" }, "plans": proposal.planned, "diff": proposal.diff});
            println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        }
        return Ok(0);
    }
    if !yes && !confirm(&format!("Apply {} repair(s)?", selected.len())) {
        if json {
            let v = serde_json::json!({"outcome": "not_confirmed", "plans": proposal.planned, "diff": proposal.diff});
            println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        } else {
            println!("not applied (answer y on a terminal, or pass --yes)");
        }
        return Ok(1);
    }
    let r = repair::execute(cfg, &selected, std::env::var("FPM_DOCTOR_FAULT").ok());
    if json {
        let v = serde_json::json!({
            "repair_id": r.repair_id, "outcome": r.outcome, "files": r.files, "steps": r.steps,
            "error": r.error, "recovered": r.recovered, "plans": proposal.planned, "diff": proposal.diff,
        });
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
    } else {
        print_apply(&r, false);
    }
    Ok(repair::exit_code(&r))
}

fn run() -> Result<i32, String> {
    // Before anything else: who is really calling, and what may they ask?
    let caller = fpm_doctor::privilege::startup(&std::env::args_os().collect::<Vec<_>>())?;
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Whoami => {
            let mut env: Vec<String> = std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect();
            env.sort();
            println!(
                "ruid={} euid={} caller={caller:?} env={}",
                nix::unistd::getuid(),
                nix::unistd::geteuid(),
                env.join(",")
            );
            Ok(0)
        }
        Cmd::Scan {
            common,
            user,
            domain,
            json,
            no_probe,
            verbose,
            checks: only,
        } => {
            let mut cfg = Config::load(common.config.as_deref(), common.root.as_deref())?;
            cfg.no_probe = no_probe;
            checks::validate_ids(&only)?;
            let only = (!only.is_empty()).then_some(only);
            let r = scan::scan_only(&cfg, &Scope { user, domain }, only.as_deref())?;
            print_report(&r, json, verbose);
            Ok(r.exit_code())
        }
        Cmd::Explain { id } => {
            match id {
                None => {
                    for d in checks::docs() {
                        println!("{:<16} {}", d.id, d.title);
                    }
                }
                Some(id) => {
                    let d = checks::docs()
                        .into_iter()
                        .find(|d| d.id == id)
                        .ok_or_else(|| format!("no check named {id}"))?;
                    println!(
                        "{} — {}\n\nWhat it does\n  {}\n\nWhy is this bad?\n  {}\n\nExample\n  {}\n\nFix\n  {}\n\nFix safety\n  {}",
                        d.id, d.title, d.what, d.why, d.example, d.fix, d.fix_safety
                    );
                }
            }
            Ok(0)
        }
        Cmd::Repair {
            common,
            domain,
            user,
            all,
            dry_run,
            yes,
            safe_only,
            checks: only,
            json,
        } => {
            if domain.is_none() && user.is_none() && !all {
                return Err("say what to repair: --domain D, --user U or --all".into());
            }
            checks::validate_ids(&only)?;
            let cfg = Config::load(common.config.as_deref(), common.root.as_deref())?;
            cmd_repair(&cfg, Scope { user, domain }, dry_run, yes, safe_only, &only, json)
        }
        Cmd::History { common, json } => {
            let cfg = Config::load(common.config.as_deref(), common.root.as_deref())?;
            let h = fpm_doctor::apply::history(&cfg);
            if json {
                println!("{}", serde_json::to_string_pretty(&h).map_err(|e| e.to_string())?);
            } else if h.is_empty() {
                println!("no repairs recorded");
            } else {
                for e in &h {
                    let files: Vec<&str> = e.files.iter().map(|f| f.file.as_str()).collect();
                    println!(
                        "{}  {:?}  {:?}{}  {}",
                        e.id,
                        e.kind,
                        e.state,
                        e.undoes
                            .as_deref()
                            .map(|u| format!(" (undoes {u})"))
                            .unwrap_or_default(),
                        report::sanitize(&files.join(", "))
                    );
                }
            }
            Ok(0)
        }
        Cmd::Undo {
            common,
            repair_id,
            json,
        } => {
            let cfg = Config::load(common.config.as_deref(), common.root.as_deref())?;
            let r = fpm_doctor::apply::undo(&cfg, &repair_id, &fpm_doctor::apply::ApplyOptions::default());
            print_apply(&r, json);
            Ok(fpm_doctor::repair::exit_code(&r))
        }
        Cmd::Hook { which } => cmd_hook(which),
        Cmd::SimRewrite { dir, user } => {
            match user {
                Some(u) => fpm_doctor::sim::rewrite_user(&dir, &u),
                None => fpm_doctor::sim::rewrite(&dir),
            }
            .map_err(|e| e.to_string())?;
            Ok(0)
        }
        Cmd::Demo {
            keep,
            json,
            serve: false,
            ..
        } => fpm_doctor::demo::run(keep.as_deref(), json),
        Cmd::Demo { keep, bind, .. } => fpm_doctor::demo::serve(keep.as_deref(), bind).map(|()| 0),
        Cmd::Cgi {
            common,
            level,
            page,
            raw,
        } => {
            use fpm_doctor::access::Level;
            let level = Level::parse(&level).unwrap_or(Level::User);
            let raw = raw || page.ends_with(".raw");
            let out = fpm_doctor::web::cgi::run(common.load(), level, &page, raw, caller.trusts_session());
            use std::io::Write;
            let mut so = std::io::stdout().lock();
            let _ = so.write_all(out.as_bytes());
            let _ = so.flush();
            // DA ignores the exit code; errors are on the page.
            Ok(0)
        }
        Cmd::Serve { common, bind } => {
            let cfg = common.load()?;
            fpm_doctor::web::serve::run(cfg, bind, None).map(|()| 0)
        }
        Cmd::WebSnapshot { common } => {
            let cfg = common.load()?;
            fpm_doctor::web::snapshot::run(&cfg).map(|()| 0)
        }
        Cmd::GenTree {
            dir,
            users,
            domains,
            drift_every,
        } => {
            fpm_doctor::sim::generate_large(&dir, users, domains, drift_every).map_err(|e| e.to_string())?;
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("fpm-doctor: {}", report::sanitize(&e));
            ExitCode::from(3)
        }
    }
}
