//! Per PHP slot in php-fpm mode: its ini files (`php.ini` and the scan
//! dir's `*.ini`) and, where the FPM binary may be run (root `/`), what it
//! says about itself (`-m` modules, `-i` ini locations).

use crate::readers::Fs;
use serde::Serialize;

/// An ini file as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IniState {
    Ok { text: String },
    Missing,
    Unreadable { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IniFile {
    pub path: String,
    #[serde(flatten)]
    pub state: IniState,
}

/// What one slot's PHP-FPM loads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotPhp {
    pub slot: u8,
    pub release: String,
    pub binary: String,
    /// `php.ini` first, then the scan dir's files in the order PHP reads them.
    pub ini: Vec<IniFile>,
    pub scan_dir: String,
    /// `-m` output (lower-cased module names); `None` when not run,
    /// `Err` when it ran and failed.
    pub modules: Option<Result<Vec<String>, String>>,
}

/// `Scan this dir for additional .ini files => X` and
/// `Loaded Configuration File => X` from `-i`.
pub fn ini_locations(info: &str) -> (Option<String>, Option<String>) {
    let get = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_once("=>"))
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty() && v != "(none)")
    };
    (
        get("Loaded Configuration File"),
        get("Scan this dir for additional .ini files"),
    )
}

/// Module names from `-m` (section headers dropped).
pub fn modules(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('['))
        .map(str::to_lowercase)
        .collect()
}

fn read_ini(fs: &Fs, path: &str) -> IniFile {
    let state = match fs.read(path) {
        Ok(Some(b)) => IniState::Ok {
            text: String::from_utf8_lossy(&b).into_owned(),
        },
        Ok(None) => IniState::Missing,
        Err(reason) => IniState::Unreadable { reason },
    };
    IniFile {
        path: path.to_string(),
        state,
    }
}

/// Reads every FPM slot's ini files; runs its binary when `run` is set.
pub fn collect(
    fs: &Fs,
    slots: &[crate::model::PhpSlot],
    run: bool,
    timeout: std::time::Duration,
) -> Vec<SlotPhp> {
    use crate::config::Paths;
    let p = &fs.cfg.paths;
    let mut out = Vec::new();
    for s in slots.iter().filter(|s| s.is_fpm()) {
        let binary = Paths::php_path(&p.php_fpm_bin, &s.prefix, &s.release);
        let mut ini_path = Paths::php_path(&p.php_ini, &s.prefix, &s.release);
        let mut scan_dir = Paths::php_path(&p.php_scan_dir, &s.prefix, &s.release);
        let mut mods = None;
        if run && fs.exists(&binary) {
            let argv = |flag: &str| vec![binary.clone(), flag.to_string()];
            mods = Some(super::run_capture(&argv("-m"), timeout, 1 << 20).map(|o| modules(&o)));
            if let Ok(info) = super::run_capture(&argv("-i"), timeout, 4 << 20) {
                let (ini, dir) = ini_locations(&info);
                ini_path = ini.unwrap_or(ini_path);
                scan_dir = dir.unwrap_or(scan_dir);
            }
        }
        let mut ini = vec![read_ini(fs, &ini_path)];
        match fs.list_dir(&scan_dir) {
            Ok(names) => ini.extend(
                names
                    .iter()
                    .filter(|n| n.ends_with(".ini"))
                    .map(|n| read_ini(fs, &crate::readers::join(&scan_dir, n))),
            ),
            Err(reason) => ini.push(IniFile {
                path: scan_dir.clone(),
                state: IniState::Unreadable { reason },
            }),
        }
        out.push(SlotPhp {
            slot: s.slot,
            release: s.release.clone(),
            binary,
            ini,
            scan_dir,
            modules: mods,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_php_info_and_modules() {
        let info = "phpinfo()\nConfiguration File (php.ini) Path => /usr/local/php83/lib\nLoaded Configuration File => /usr/local/php83/lib/php.ini\nScan this dir for additional .ini files => /usr/local/php83/lib/php.conf.d\n";
        assert_eq!(
            ini_locations(info),
            (
                Some("/usr/local/php83/lib/php.ini".into()),
                Some("/usr/local/php83/lib/php.conf.d".into())
            )
        );
        assert_eq!(
            ini_locations("Loaded Configuration File => (none)\n"),
            (None, None)
        );
        let m = modules("[PHP Modules]\nCore\nxdebug\n\n[Zend Modules]\nXdebug\nZend OPcache\n");
        assert_eq!(m, vec!["core", "xdebug", "xdebug", "zend opcache"]);
    }
}
