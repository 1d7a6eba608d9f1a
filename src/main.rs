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

fn print_report(r: &scan::Report, json: bool, verbose: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).expect("report serialises"));
    } else {
        print!("{}", report::human(r, std::io::stdout().is_terminal(), verbose));
    }
}

fn run() -> Result<i32, String> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Scan {
            common,
            user,
            domain,
            json,
            no_probe,
            verbose,
        } => {
            let mut cfg = Config::load(common.config.as_deref(), common.root.as_deref())?;
            cfg.no_probe = no_probe;
            let r = scan::scan(&cfg, &Scope { user, domain })?;
            print_report(&r, json, verbose);
            Ok(r.exit_code())
        }
        Cmd::Explain { id } => {
            match id {
                None => {
                    for d in checks::DOCS {
                        println!("{:<16} {}", d.id, d.title);
                    }
                }
                Some(id) => {
                    let d = checks::DOCS
                        .iter()
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
        Cmd::Demo { keep, json } => fpm_doctor::demo::run(keep.as_deref(), json),
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
