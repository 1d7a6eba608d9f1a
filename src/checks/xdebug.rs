//! `xdebug-enabled`: Xdebug loaded into a PHP-FPM slot that serves sites.

use super::{CheckDoc, CheckOutput, CheckState, Finding, Severity};
use crate::evidence::php::{IniState, SlotPhp};
use crate::model::Server;

pub const ID: &str = "xdebug-enabled";

pub const DOC: CheckDoc = CheckDoc {
    id: ID,
    title: "Xdebug loaded in PHP-FPM on a production server",
    what: "For each PHP slot in php-fpm mode, scans its `php.ini` and ini scan dir (from `php-fpmXY -i` on the live \
server, else `/usr/local/phpXY/lib/php.conf.d/`) for a `zend_extension=…xdebug…` line that is not commented out, \
and asks the FPM binary (`php-fpmXY -m`, live root only) whether Xdebug is loaded.",
    why: "Xdebug slows every request several times over; in `debug` mode with `start_with_request` each request \
first tries to reach a debugger. Slow workers hit `fastcgi_read_timeout` (504) and fill the pool (502).",
    example: "`zend_extension=xdebug.so` at /usr/local/php83/lib/php.conf.d/90-custom.ini:4 (PHP 8.3, slot 1).",
    fix: "Comment the line out (`;zend_extension=xdebug.so`) and restart that PHP-FPM. Only in a file CustomBuild \
leaves alone (configurable, default `php.conf.d/90-custom.ini`); in a file it may regenerate, remove Xdebug the way \
it was installed so a rebuild does not bring it back.",
    fix_safety: "`confirm`: developers may want Xdebug on a staging server. Manual when the line is in a file \
CustomBuild may regenerate.",
};

/// Byte span and 1-based line of each active `zend_extension=…xdebug…` line.
pub fn xdebug_lines(text: &str) -> Vec<(u32, usize, usize, String)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let l = raw.trim_end_matches(['\n', '\r']);
        let t = l.trim_start();
        if let Some((k, v)) = t.split_once('=') {
            let k = k.trim();
            let v = v.split(';').next().unwrap_or("");
            if (k == "zend_extension" || k == "extension") && v.to_lowercase().contains("xdebug") {
                let start = off + (l.len() - t.len());
                out.push((i as u32 + 1, start, off + l.len(), t.to_string()));
            }
        }
        off += raw.len();
    }
    out
}

fn domains_on_slot(server: &Server, slot: u8) -> Vec<String> {
    let mut v: Vec<String> = server
        .users
        .iter()
        .flat_map(|u| u.domains.iter())
        .filter(|d| d.php_select.unwrap_or(1) == slot)
        .map(|d| d.name.clone())
        .collect();
    v.sort();
    v
}

fn slot_findings(server: &Server, sp: &SlotPhp, out: &mut Vec<Finding>) {
    let mut lines = 0;
    for f in &sp.ini {
        match &f.state {
            IniState::Ok { text } => {
                for (line, start, end, t) in xdebug_lines(text) {
                    lines += 1;
                    let mut x = Finding::new(
                        ID,
                        Severity::Warning,
                        format!(
                            "Xdebug is enabled for PHP {} (slot {}, {}): every request on it runs slower and may wait for a debugger.",
                            sp.release, sp.slot, sp.binary
                        ),
                    );
                    x.file = Some(f.path.clone());
                    x.line = Some(line);
                    x.text = Some(t);
                    x.span = Some((start, end));
                    x.affected_domains = domains_on_slot(server, sp.slot);
                    out.push(x);
                }
            }
            IniState::Missing => {}
            IniState::Unreadable { reason } => {
                let mut x = Finding::new(ID, Severity::Unknown, reason.clone());
                x.file = Some(f.path.clone());
                out.push(x);
            }
        }
    }
    match &sp.modules {
        Some(Ok(m)) if lines == 0 && m.iter().any(|x| x == "xdebug") => {
            let mut x = Finding::new(
                ID,
                Severity::Warning,
                format!(
                    "`{} -m` lists Xdebug for PHP {} (slot {}), but no ini line loading it was found in {} or {}: it is loaded from elsewhere (another scan dir, -d).",
                    sp.binary, sp.release, sp.slot, sp.ini.first().map(|f| f.path.as_str()).unwrap_or("php.ini"), sp.scan_dir
                ),
            );
            x.file = Some(sp.binary.clone());
            x.affected_domains = domains_on_slot(server, sp.slot);
            out.push(x);
        }
        Some(Err(e)) => {
            let mut x = Finding::new(ID, Severity::Unknown, format!("cannot ask {}: {e}", sp.binary));
            x.file = Some(sp.binary.clone());
            x.secondary = true;
            out.push(x);
        }
        _ => {}
    }
}

pub fn check(server: &Server, _ctx: &super::Context) -> CheckOutput {
    let Some(slots) = &server.evidence.php else {
        return CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        };
    };
    if slots.is_empty() {
        return CheckOutput {
            findings: vec![],
            state: CheckState::NotApplicable,
        };
    }
    let mut findings = Vec::new();
    for sp in slots {
        slot_findings(server, sp, &mut findings);
    }
    let state = super::state_from(&findings);
    CheckOutput { findings, state }
}

/// Slot 1 (8.3) with these (path, text) ini files (fixture builder).
pub fn fixture(files: &[(&str, &str)], modules: Option<Vec<&str>>) -> Server {
    let mut s = Server::default();
    s.evidence.php = Some(vec![SlotPhp {
        slot: 1,
        release: "8.3".into(),
        binary: "/usr/local/php83/sbin/php-fpm83".into(),
        ini: files
            .iter()
            .map(|(p, t)| crate::evidence::php::IniFile {
                path: p.to_string(),
                state: IniState::Ok { text: t.to_string() },
            })
            .collect(),
        scan_dir: "/usr/local/php83/lib/php.conf.d".into(),
        modules: modules.map(|m| Ok(m.into_iter().map(String::from).collect())),
    }]);
    s
}

pub const PHP_INI: &str = "/usr/local/php83/lib/php.ini";
pub const CUSTOM_INI: &str = "/usr/local/php83/lib/php.conf.d/90-custom.ini";

pub fn fixtures() -> Vec<super::Fixture> {
    vec![
        super::Fixture {
            name: "zend_extension=xdebug.so in the scan dir",
            server: fixture(
                &[
                    (PHP_INI, "[PHP]\nmemory_limit = 256M\n"),
                    (
                        CUSTOM_INI,
                        "; debugging\nxdebug.mode=debug\nzend_extension=xdebug.so\n",
                    ),
                ],
                None,
            ),
            triggers: true,
        },
        super::Fixture {
            name: "loaded per -m but no ini line found",
            server: fixture(&[(PHP_INI, "")], Some(vec!["core", "xdebug", "zend opcache"])),
            triggers: true,
        },
        super::Fixture {
            name: ";zend_extension=xdebug.so commented out, xdebug.* settings left",
            server: fixture(
                &[
                    (
                        PHP_INI,
                        "[PHP]\n;zend_extension=xdebug.so\n# zend_extension=xdebug.so\n",
                    ),
                    (
                        CUSTOM_INI,
                        "xdebug.mode=off\nzend_extension=opcache.so ; not xdebug\n",
                    ),
                ],
                Some(vec!["core", "zend opcache"]),
            ),
            triggers: false,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_active_lines_with_spans() {
        let t = "; x\n  zend_extension = \"/usr/local/php83/lib/php/extensions/no-debug-non-zts-20230831/xdebug.so\"\n;zend_extension=xdebug.so\nextension=xdebug\n";
        let v = xdebug_lines(t);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, 2);
        assert_eq!(&t[v[0].1..v[0].2], v[0].3);
        assert!(v[0].3.starts_with("zend_extension"));
        assert_eq!(v[1].0, 4);
        assert!(xdebug_lines("zend_extension=opcache.so ; xdebug later\n").is_empty());
    }
}
